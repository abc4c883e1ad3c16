"""Evidence checks: the evaluator picks claims from a report, searches for them, and judges each claim.

How many claims (`search_depth`) and how many search calls per claim (`search_hops`) come from the
harness. A hop searches the claim; a further hop, taken only while no passage was found, searches the
claim with the title of the source it cites (or the query). The verdict is the model's choice among
Yes / No / Unclear given the passages (after contextual calibration, see the evaluate stage): supported,
contradicted, not_found; no passage means not_found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from score.search.base import Passage, SearchBackend

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
    sentences = [s.strip() for s in _SENTENCE.split(report) if s.strip() and not s.strip().startswith("#")]
    sentences = list(dict.fromkeys(s for s in sentences if len(s) >= min_chars))
    cited = [s for s in sentences if _CITE.search(s)]
    other = sorted((s for s in sentences if not _CITE.search(s)), key=len, reverse=True)
    return [(s, [int(n) for n in _CITE.findall(s)]) for s in (cited + other)[:depth]]


def search_claim(
    search: SearchBackend,
    claim: str,
    cited: list[int],
    source_titles: dict[int, str],
    query: str,
    hops: int,
    k: int = 2,
) -> ClaimSearch:
    text = _CITE.sub("", claim).strip()
    plans = [text] + [f"{source_titles.get(cited[0], query) if cited else query} {text}"] * (hops - 1)
    queries: list[str] = []
    passages: list[Passage] = []
    for q in plans[:hops]:
        queries.append(q)
        passages = search.search(q, k)
        if passages:
            break
    return ClaimSearch(claim, cited, queries, passages)


VERDICTS = ("supported", "contradicted", "not_found")


def verdict(p_yes: float, p_no: float, p_unclear: float, found: bool) -> str:
    """The verdict from the model's answer probabilities.

    >>> verdict(0.6, 0.3, 0.1, True), verdict(0.6, 0.3, 0.1, False), verdict(0.2, 0.5, 0.3, True)
    ('supported', 'not_found', 'contradicted')
    """
    if not found:
        return "not_found"
    return VERDICTS[max(range(3), key=lambda i: (p_yes, p_no, p_unclear)[i])]
