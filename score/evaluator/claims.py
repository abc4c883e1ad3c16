"""Evidence checks: the evaluator picks claims from a report, searches for them, and judges each claim.

How many claims (`search_depth`) and how many search calls per claim (`search_hops`) come from the
harness. Every hop is a search call and every one is made: the claim; the claim with the title of the source it
cites; the claim with the research query; the claim's longest words alone. The evaluator is shown the passages
the claim cites (the sources the solver numbered) and then every passage its searches found (each once), and
answers Yes / No / Unclear: supported, contradicted, not_found. No passage at all means not_found without asking.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from score.rewards import SUPPORT
from score.scale import ScoreTokens, restricted_softmax
from score.search.base import Passage, SearchBackend

log = logging.getLogger(__name__)

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_CITE = re.compile(r"\[(\d{1,3})\]")


@dataclass
class ClaimSearch:
    claim: str
    cited: list[int]
    queries: list[str]
    passages: list[Passage]


def pick_claims(report: str, depth: int, min_chars: int) -> list[tuple[str, list[int]]]:
    """Up to `depth` claims: cited sentences first, then the longest others; markdown headings are skipped.

    >>> pick_claims("# Title\\nSolar output doubled since 2015 [2]. It is sunny today and the sky is clear.", 2, 20)
    [('Solar output doubled since 2015 [2].', [2]), ('It is sunny today and the sky is clear.', [])]
    """
    sentences = list(dict.fromkeys(s for s in _sentences(report) if len(s) >= min_chars))
    cited = [s for s in sentences if _CITE.search(s)]
    other = sorted((s for s in sentences if not _CITE.search(s)), key=len, reverse=True)
    return [(s, [int(n) for n in _CITE.findall(s)]) for s in (cited + other)[:depth]]


def _sentences(report: str) -> list[str]:
    """The report's sentences, markdown headings left out."""
    return [s.strip() for s in _SENTENCE.split(report) if s.strip() and not s.strip().startswith("#")]


def short_cited(report: str, min_chars: int) -> list[tuple[str, list[int]]]:
    """The report's cited sentences too short to be checked claims (`pick_claims` skips them), each once.

    >>> short_cited("Solar grew [1]. Solar output doubled since 2015 across Spain [2].", 30)
    [('Solar grew [1].', [1])]
    """
    short = dict.fromkeys(s for s in _sentences(report) if len(s) < min_chars and _CITE.search(s))
    return [(s, [int(n) for n in _CITE.findall(s)]) for s in short]


@dataclass(frozen=True)
class Hops:
    """How a claim is searched: `calls` search calls (`hop_queries`), then the `extra` queries (a follow-up query
    the evaluator wrote), `passages` passages each."""

    calls: int
    passages: int = 2
    extra: tuple[str, ...] = ()


def search_claim(
    search: SearchBackend, claim: str, cited: list[int], source_titles: dict[int, str], query: str, hops: Hops
) -> ClaimSearch:
    """The claim's search calls, as `hops` says; passages kept in order, each once."""
    planned = hop_queries(claim, cited, source_titles, query)[: hops.calls]
    queries = list(dict.fromkeys(planned + [q for q in hops.extra if q]))
    passages: dict[str, Passage] = {}
    for q in queries:
        for p in _found(search, q, hops.passages):
            passages.setdefault(p.id, p)
    return ClaimSearch(claim, cited, queries, list(passages.values()))


def _found(search: SearchBackend, query: str, k: int) -> list[Passage]:
    """A search call's passages; a search service that fails (score.search.searxng) finds nothing, with a warning."""
    from score.search.searxng import SearchError

    try:
        return search.search(query, k)
    except SearchError as e:
        log.warning("evidence search %r found nothing: %s", query[:80], e)
        return []


def hop_queries(claim: str, cited: list[int], source_titles: dict[int, str], query: str) -> list[str]:
    """The search calls a claim may get, in the order hops take them (distinct, never empty).

    >>> hop_queries("Solar output doubled [2].", [2], {2: "Sun"}, "Spain")
    ['Solar output doubled .', 'Sun Solar output doubled .', 'Spain Solar output doubled .', 'doubled output Solar']
    """
    text = _CITE.sub("", claim).strip()
    title = source_titles.get(cited[0], "") if cited else ""
    words = sorted(set(re.findall(r"[A-Za-z][A-Za-z-]{3,}", text)), key=lambda w: (-len(w), w))[:4]
    plans = [text, f"{title} {text}".strip(), f"{query} {text}".strip(), " ".join(words)]
    return [q for q in dict.fromkeys(plans) if q]


def shown_passages(
    cs: ClaimSearch, sources: list[dict], passage_chars: int, cited_max: int
) -> list[tuple[str, str, str]]:
    """(id, label, text) of what the evaluator reads for a claim: the first `cited_max` passages it cites, labelled
    with their marker, then the ones its search found (each once).

    >>> cs = ClaimSearch("Solar doubled [2].", [2], ["Solar doubled"], [Passage("p9", "Sun", "Sun text", "", 1.0)])
    >>> shown_passages(cs, [{"n": 2, "passage_id": "p1", "title": "Solar", "text": "Solar doubled."}], 100, 2)
    [('p1', '[2] (Solar)', 'Solar doubled.'), ('p9', '(Sun)', 'Sun text')]
    """
    by_n = {s["n"]: s for s in sources}
    cited = [by_n[n] for n in dict.fromkeys(cs.cited) if n in by_n][:cited_max]
    out = [(s["passage_id"], f"[{s['n']}] ({s['title']})", s["text"][:passage_chars]) for s in cited]
    seen = {pid for pid, _, _ in out}
    return out + [(p.id, f"({p.title})", p.text[:passage_chars]) for p in cs.passages if p.id not in seen]


VERDICTS = ("supported", "contradicted", "not_found")
ANSWERS = (" Yes", " No", " Un")  # the answer tokens' text, in VERDICTS order ("Unclear" starts with " Un")


def answer_tokens(tokenize) -> ScoreTokens:
    """The verdict answer set under `tokenize`: the first token of each of ANSWERS, in VERDICTS order; a verdict is
    drawn from the distribution restricted to them (`Backend.write_scores`).

    >>> answer_tokens(lambda s: [ord(s[1])])
    ScoreTokens(candidates=(89, 78, 85), then=None, close=None)
    """
    ids = [tokenize(a)[:1] for a in ANSWERS]
    if any(not i for i in ids) or len({i[0] for i in ids}) != len(ANSWERS):
        raise ValueError(
            f"the tokenizer's first tokens of {list(ANSWERS)} are {ids}: a verdict needs a distinct first token per "
            "answer; use a model whose tokenizer tells them apart, or change score.evaluator.claims.ANSWERS"
        )
    return ScoreTokens(tuple(i[0] for i in ids), None)


def support_distribution(logprobs: Sequence[float], temperature: float) -> list[float]:
    """The distribution a verdict is drawn from, by support level: the answers' log-probs in VERDICTS order,
    restricted to the answers at `temperature` (`score.scale.restricted_softmax`), as probabilities of levels 0, 1,
    2 (contradicted, not found, supported: score.rewards.SUPPORT), what verdict pair credit takes expectations over.

    >>> import math
    >>> [round(x, 3) for x in support_distribution([math.log(0.5), math.log(0.2), math.log(0.3)], 1.0)]
    [0.2, 0.3, 0.5]
    """
    out = [0.0, 0.0, 0.0]
    for v, x in zip(VERDICTS, np.exp(restricted_softmax(logprobs, temperature))):
        out[SUPPORT[v]] = float(x)
    return out


def parse_verdict(text: str) -> str | None:
    """The verdict an answer the evaluator wrote names, or None when it names none. The answer is one token (the
    first of " Yes", " No" or " Unclear" in the model's tokenizer), so a prefix of the word counts, and so does
    the whole word.

    >>> parse_verdict(" Yes"), parse_verdict("No"), parse_verdict(" Un"), parse_verdict(" Unclear")
    ('supported', 'contradicted', 'not_found', 'not_found')
    >>> parse_verdict(" Maybe"), parse_verdict(" "), parse_verdict(" Nope")
    (None, None, None)
    """
    word = text.strip().lower()
    for v, answer in zip(VERDICTS, ("yes", "no", "unclear")):
        if word and answer.startswith(word):
            return v
    return None
