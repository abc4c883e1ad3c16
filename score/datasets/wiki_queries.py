"""Build the embedded default's queries from the Wikipedia corpus: research questions the corpus answers.

    python -m score.datasets.wiki_queries [--corpus PATH] [--out score/datasets/wiki_queries.jsonl]

Each question joins two passages: a passage X whose text names the title of another passage Y ("bridge" questions,
as in HotpotQA): "What connects X and Y?". Answering it well needs both passages, so its gold passage ids are
[X, Y]. Where Y's text has a sentence holding exactly one year (else X's), the question also asks to fill that year in
the sentence with the year blanked (cloze): the year is the gold answer. Only specific links count (Y named in at most
`MAX_MENTIONS` passages: "France" links everything to everything), and each passage is used by one question at most.

Split by title: a title's split is fixed by a hash of the title (a fifth held out), and a question is in a split
only if both of its passages are, so no gold passage is shared between training and held-out questions.
Deterministic: the same corpus gives the same file, byte for byte (tests/test_queries.py rebuilds it).

Rows: id, query, split (train | heldout), gold_passage_ids, gold_titles, gold_answer (null: none). The text is
Wikipedia's (CC BY-SA 4.0): the file is shared under the same licence (score/datasets/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

OUT = Path(__file__).parent / "wiki_queries.jsonl"
MAX_MENTIONS = 20  # Y counts as a specific link when at most this many passages name it
HELDOUT_SHARE = 5  # 1 title in 5 is held out
MAX_WORDS = 4  # titles of up to 4 words are looked for in the texts
_WORDS = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-2][0-9])\b")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def split_of(title: str) -> str:
    """A title's split, from its hash alone: a question may use two passages only of one split.

    >>> split_of("Bertolt Brecht") in ("train", "heldout")
    True
    """
    return "heldout" if _hash(title) % HELDOUT_SHARE == 0 else "train"


def mentions(texts: dict[str, str], titles: dict[str, str]) -> dict[str, list[str]]:
    """Passage id -> ids of the other passages whose title its text names (word n-grams of up to MAX_WORDS words,
    matched case-sensitively against the titles), in order of first mention.

    >>> mentions({"a": "It moved to Berlin in 1924.", "b": "Berlin is a city."}, {"Berlin": "b", "It": "x"})
    {'a': ['x', 'b'], 'b': []}
    """
    out = {}
    for pid, text in texts.items():
        words = _WORDS.findall(text)
        found: dict[str, None] = {}
        for i in range(len(words)):
            for n in range(1, MAX_WORDS + 1):
                other = titles.get(" ".join(words[i : i + n]))
                if other is not None and other != pid:
                    found.setdefault(other)
        out[pid] = list(found)
    return out


def cloze(text: str) -> tuple[str, str] | None:
    """The first sentence of `text` with exactly one year (40 to 200 characters), the year blanked, and the year.

    >>> cloze("Short. The Threepenny Opera was written in Berlin in 1928 with Kurt Weill.")
    ('The Threepenny Opera was written in Berlin in ____ with Kurt Weill.', '1928')
    >>> cloze("Born 1898, died 1956.") is None
    True
    """
    for sentence in _SENTENCE.split(text):
        years = _YEAR.findall(sentence)
        if len(years) == 1 and 40 <= len(sentence) <= 200:
            return _YEAR.sub("____", sentence, count=1).strip(), years[0]
    return None


def question(x: str, y: str, blank: str | None) -> str:
    """The query text of the pair (X names Y), with the cloze when there is one."""
    head = f"What connects {x} and {y}? Research both and explain the link, citing your sources."
    return head if blank is None else f'{head} Then fill the blank with the year: "{blank}"'


def build(corpus: Path) -> list[dict]:
    """The query rows from a corpus Parquet (id, title, text): train rows first, then held-out; in each, the rows
    with a gold answer first, then in hash order."""
    table = pq.read_table(corpus, columns=["id", "title", "text"]).to_pylist()
    texts = {r["id"]: r["text"] for r in table}
    title_of = {r["id"]: r["title"] for r in table}
    named = mentions(texts, {r["title"]: r["id"] for r in table})
    counts: dict[str, int] = defaultdict(int)
    for others in named.values():
        for other in others:
            counts[other] += 1
    used: set[str] = set()
    rows = []
    for x in sorted(texts, key=lambda pid: _hash(title_of[pid])):
        if x in used:
            continue
        split = split_of(title_of[x])
        for y in named[x]:
            if y in used or counts[y] > MAX_MENTIONS or split_of(title_of[y]) != split:
                continue
            if title_of[y] in title_of[x] or title_of[x] in title_of[y]:
                continue  # "Berlin" in "Berlin Wall": one topic, not a link
            found = cloze(texts[y]) or cloze(texts[x])
            rows.append(
                {
                    "split": split,
                    "query": question(title_of[x], title_of[y], found[0] if found else None),
                    "gold_passage_ids": [x, y],
                    "gold_titles": [title_of[x], title_of[y]],
                    "gold_answer": found[1] if found else None,
                }
            )
            used.update((x, y))
            break
    rows.sort(key=lambda r: (r["split"] != "train", r["gold_answer"] is None))  # stable: else in hash order
    counters: dict[str, int] = defaultdict(int)
    for r in rows:
        r["id"] = f"{r['split'][0]}{counters[r['split']]:04d}"  # t0000.., h0000..
        counters[r["split"]] += 1
    return [{k: r[k] for k in ("id", "query", "split", "gold_passage_ids", "gold_titles", "gold_answer")} for r in rows]


def write(rows: list[dict], out: Path) -> None:
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    from score.models.embedded import cache_root
    from score.search.corpus import ensure_wiki_corpus

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=None, help="corpus Parquet (default: the wiki corpus, built once)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    rows = build(args.corpus or ensure_wiki_corpus(cache_root()))
    write(rows, args.out)
    by = defaultdict(int)
    for r in rows:
        by[(r["split"], r["gold_answer"] is not None)] += 1
    print(
        f"wrote {len(rows)} queries to {args.out}: "
        + ", ".join(f"{s} {'with' if a else 'without'} answer {n}" for (s, a), n in sorted(by.items()))
    )


if __name__ == "__main__":
    main()
