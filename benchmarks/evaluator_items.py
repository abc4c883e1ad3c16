"""Ground-truth items for the evaluator (claim-verification) benchmark, built from the search corpus, no model.

Each item is one sentence of a corpus passage (the claim) with one value in it (a number, else a capitalised
name) and three ways to get the verdict wrong:
- anchor: the claim with that value swapped for another of its kind, so the passage does not support it;
- mirrored_passage: the passage with the same swap, so there the anchor is supported and the claim is not (a
  judge that spots "the odd-looking edited sentence" instead of reading the passage fails one of the two);
- neighbour_passage: a passage of another title in the same split, which supports neither.
Train and held-out are split by title (no title, so no passage, in both). The build is deterministic for a corpus
and seed. Left out: paraphrased claims, claims spanning sentences, values that are dates in words.

Run: `python benchmarks/evaluator_items.py [--out PATH] [--train 300] [--heldout 200] [--seed 0]
[--config configs/default.yaml]`; a benchmark calls `load_or_build(cfg_or_ws)`.
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections import Counter, defaultdict
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from score.config import RunConfig, load_config
from score.search.corpus import read_corpus
from score.store.schemas import ArtifactError, check_schema
from score.workspace import Workspace

FIELDS = {  # every column a string; `value` is in `passage` and `claim`, `anchor_value` is in neither
    "item_id": "stable id (the passage id)",
    "split": "train | heldout",
    "passage_id": "corpus id of the passage",
    "title": "corpus title of the passage",
    "passage": "the passage text, cut at sentence boundaries to at most MAX_PASSAGE characters around the claim",
    "claim": "one sentence of the passage (40-220 characters) holding `value`",
    "value": "the value in the claim that the anchor swaps",
    "kind": "number | name",
    "anchor": "the claim with `value` replaced by `anchor_value`: not supported by `passage`",
    "anchor_value": "the value the anchor has instead",
    "mirrored_passage": "`passage` with `value` replaced by `anchor_value`: supports the anchor, not the claim",
    "neighbour_passage_id": "corpus id of a passage of another title in the same split",
    "neighbour_passage": "that passage (cut like `passage`): supports neither claim nor anchor",
}
ITEM_SCHEMA = pa.schema([pa.field(name, pa.string(), nullable=False) for name in FIELDS])
MAX_PASSAGE = 320  # near what self-evaluate shows of a passage (evaluate.passage_chars: 240); half 600's tokens
BUILD = "python benchmarks/evaluator_items.py"
# a break after a lowercase word, digit or bracket and before a capital: "U.S. Army" and "c. 1500" stay whole
_SENTENCE_BREAK = re.compile(r"(?<=[a-z0-9)\]\"'][.!?])\s+(?=[A-Z\"(])|\n+")
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*\b")
_NAME = re.compile(r"\b[A-Z][a-z]{2,}(?:\s[A-Z][a-z]{2,})*\b(?!-)")  # not "Afro" of "Afro-Brazilian"


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`, whitespace between sentences excluded.

    >>> t = "Born in 1879 in Ulm. He moved to the U.S. in 1933."
    >>> [t[a:b] for a, b in sentence_spans(t)]
    ['Born in 1879 in Ulm.', 'He moved to the U.S. in 1933.']
    """
    starts = [0] + [m.end() for m in _SENTENCE_BREAK.finditer(text)]
    ends = [m.start() for m in _SENTENCE_BREAK.finditer(text)] + [len(text)]
    return [(a, b) for a, b in zip(starts, ends) if b > a]


def window(spans: list[tuple[int, int]], i: int, limit: int = MAX_PASSAGE) -> tuple[int, int]:
    """The widest run of whole sentences holding sentence `i` within `limit` characters, earlier context first.

    >>> window([(0, 300), (301, 500), (501, 700), (701, 800)], 2, limit=600)
    (301, 800)
    """
    a = next(k for k in range(i + 1) if spans[i][1] - spans[k][0] <= limit)
    b = i
    while b + 1 < len(spans) and spans[b + 1][1] - spans[a][0] <= limit:
        b += 1
    return spans[a][0], spans[b][1]


def shifted_number(value: str, offset: int) -> str | None:
    """`value` with its digits read as one integer moved by `offset`, separators and digit count kept (None when
    the shift would change the digit count).

    >>> shifted_number("1879", 3), shifted_number("1,250", -7), shifted_number("98", 4)
    ('1882', '1,243', None)
    """
    digits = re.sub(r"\D", "", value)
    moved = int(digits) + offset
    if moved < 0 or len(str(moved)) > len(digits):
        return None
    new = iter(str(moved).zfill(len(digits)))
    return "".join(next(new) if c.isdigit() else c for c in value)


def names_in(sentence: str, title: str) -> list[str]:
    """Capitalised names in `sentence` after a lowercase word or comma (so no sentence's or list item's first word),
    sharing no word with `title`.

    >>> names_in("Curie worked in Paris with Pierre Curie. Notes:Then", "Marie Curie")
    ['Paris']
    """
    banned = set(title.split())
    after_word = [m for m in _NAME.finditer(sentence) if re.search(r"[a-z0-9,] $", sentence[: m.start()])]
    return [m.group() for m in after_word if not banned & set(m.group().split())]


def swap(text: str, value: str, new: str) -> str:
    """`text` with every whole-token `value` replaced by `new`.

    >>> swap("In 1879 and 18790, 1879.", "1879", "1882")
    'In 1882 and 18790, 1882.'
    """
    return re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", lambda _: new, text)


def _candidates(claim: str, title: str, rng: random.Random, pool: dict[int, list[str]]):
    """(value, kind, anchor value) to try for `claim`: its numbers first, then its names."""
    for value in dict.fromkeys(m.group() for m in _NUMBER.finditer(claim)):
        for offset in rng.sample([*range(-9, 0), *range(1, 10)], 6):
            yield value, "number", shifted_number(value, offset)
    for value in dict.fromkeys(names_in(claim, title)):
        same_size = pool.get(len(value.split()), [value])
        alike = [n for n in same_size if n[-2:] == value[-2:]] or same_size  # "English" -> "Spanish", not "Peru"
        for _ in range(6):
            yield value, "name", rng.choice(alike)


def _valid(passage: str, claim: str, value: str, new: str | None) -> bool:
    """Whether the swap makes the anchor unsupported by `passage` and supported by the mirrored copy."""
    if not new or value in new or new in value or new in passage:
        return False
    mirrored = swap(passage, value, new)  # keeps `value` where it sits inside a longer token ("1879" in "18790")
    return value not in mirrored and swap(claim, value, new) in mirrored


def make_item(row: dict, rng: random.Random, pool: dict[int, list[str]]) -> dict | None:
    """The item of one corpus row, or None when no sentence of 40-220 characters has a value to swap."""
    text, spans = row["text"], sentence_spans(row["text"])
    eligible = [i for i, (a, b) in enumerate(spans) if 40 <= b - a <= 220]
    rng.shuffle(eligible)
    eligible.sort(key=lambda i: not _NUMBER.search(text, *spans[i]))  # numbers first: a swapped name reads oddly
    for i in eligible:
        a, b = window(spans, i)
        passage, claim = text[a:b], text[spans[i][0] : spans[i][1]]
        for value, kind, new in _candidates(claim, row["title"], rng, pool):
            if _valid(passage, claim, value, new):
                ids = {"item_id": row["id"], "passage_id": row["id"], "title": row["title"], "passage": passage}
                swapped = {"anchor": swap(claim, value, new), "mirrored_passage": swap(passage, value, new)}
                return ids | {"claim": claim, "value": value, "kind": kind, "anchor_value": new} | swapped
    return None


def name_pool(passages: list[dict]) -> dict[int, list[str]]:
    """Names (as `names_in` finds them) in at least 3 passages, by word count, sorted: the anchors' names, common
    ones ("France", "Roman Empire") so that an anchor is not told by a rare word."""
    names_of = (
        {n for a, b in sentence_spans(p["text"]) for n in names_in(p["text"][a:b], p["title"])} for p in passages
    )
    counts = Counter(n for names in names_of for n in names)
    pool = defaultdict(list)
    for n in sorted(n for n, k in counts.items() if k >= 3):
        pool[len(n.split())].append(n)
    return dict(pool)


def add_neighbours(items: list[dict], split: str, rng: random.Random) -> None:
    """Label the items of one split, and give each a passage of another title of the split lacking both values."""
    for item in items:
        item["split"] = split
        values = (item["value"], item["anchor_value"])
        others = [o for o in items if o["title"] != item["title"] and not any(v in o["passage"] for v in values)]
        if not others:
            raise ValueError(f"no passage of another title in the {split} split lacks {values}; ask for more")
        other = rng.choice(others)
        item |= {"neighbour_passage_id": other["passage_id"], "neighbour_passage": other["passage"]}


def build_items(
    passages: list[dict], n_train: int = 300, n_heldout: int = 200, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """(train, heldout) items from corpus rows: titles shuffled, each title's passages to one split in turn."""
    rng, rows = random.Random(seed), sorted(passages, key=lambda p: p["id"])
    pool, by_title = name_pool(rows), defaultdict(list)
    for row in rows:
        by_title[row["title"]].append(row)
    titles = sorted(by_title)
    rng.shuffle(titles)
    items = (item for t in titles for row in by_title[t] if (item := make_item(row, rng, pool)))  # lazy: stops early
    train = list(islice(items, n_train))
    seen = {r["title"] for r in train}  # the rest of a title cut at the boundary is dropped, not held out
    heldout = list(islice((item for item in items if item["title"] not in seen), n_heldout))
    if len(train) < n_train or len(heldout) < n_heldout:
        raise ValueError(f"the corpus gave {len(train)}+{len(heldout)} items, not {n_train}+{n_heldout}; ask for fewer")
    add_neighbours(train, "train", rng)
    add_neighbours(heldout, "heldout", rng)
    return train, heldout


def write_items(path: str | Path, rows: list[dict]) -> None:
    """Write item rows as Parquet under ITEM_SCHEMA (atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=ITEM_SCHEMA), tmp)
    tmp.rename(path)


def read_items(path: str | Path) -> list[dict]:
    """Item rows from `path`; raises naming the file and the column when it does not match ITEM_SCHEMA."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evaluator items {path} do not exist; build them with `{BUILD} --out {path}`")
    try:
        check_schema(pq.read_schema(path), ITEM_SCHEMA, f"evaluator items {path}")
    except ArtifactError as e:  # the project's one schema check; a ValueError to this file's callers
        raise ValueError(f"{e}; rebuild with `{BUILD} --out {path}`") from None
    return pq.read_table(path, columns=ITEM_SCHEMA.names).to_pylist()


def default_path(ws: Workspace, n_train: int = 300, n_heldout: int = 200, seed: int = 0) -> Path:
    """Where a build of `ws`'s corpus with these sizes and seed lives: named by them, so no other build is reused."""
    return ws.cache / "evaluator_items" / f"{ws.corpus_path.stem}-t{n_train}-h{n_heldout}-s{seed}.parquet"


def load_or_build(
    cfg_or_ws: RunConfig | Workspace, path: str | Path | None = None, n_train=300, n_heldout=200, seed=0
) -> list[dict]:
    """The items at `path` (default: `default_path`), built from the workspace's corpus the first time."""
    ws = cfg_or_ws if isinstance(cfg_or_ws, Workspace) else Workspace(cfg_or_ws)
    path = Path(path) if path else default_path(ws, n_train, n_heldout, seed)
    if not path.exists():
        train, heldout = build_items(read_corpus(ws.corpus_path).to_pylist(), n_train, n_heldout, seed)
        write_items(path, train + heldout)
    return read_items(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="default: <cache>/evaluator_items/<corpus>-t-h-s.parquet")
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--heldout", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="configs/default.yaml")
    args = parser.parse_args()
    t0, ws = time.perf_counter(), Workspace(load_config(args.config))
    out = Path(args.out) if args.out else default_path(ws, args.train, args.heldout, args.seed)
    out.unlink(missing_ok=True)  # the command builds afresh; load_or_build reuses
    rows = load_or_build(ws, out, args.train, args.heldout, args.seed)
    print(f"wrote {out} in {time.perf_counter() - t0:.1f}s")
    print(dict(sorted(Counter((r["split"], r["kind"]) for r in rows).items())))
    for r in rows[:: max(1, len(rows) // 3)][:3]:
        print({k: r[k] for k in ("split", "title", "claim", "anchor", "kind", "neighbour_passage_id")})


if __name__ == "__main__":
    main()
