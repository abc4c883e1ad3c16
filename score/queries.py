"""Query sets: load a Parquet, JSONL or CSV file of (id, query) rows, strictly, and pick each round's share.

Optional columns: `split` (train | heldout: held-out rows are never trained on; score.gold measures every
checkpoint on them), `gold_passage_ids` (the corpus passages a good answer cites: a list, or ids joined by "|")
and `gold_answer` (a short answer a good report states). Gold feeds measurement only (score.gold), never a reward.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from score.config import DataConfig

DATA = Path(__file__).parent / "datasets"
BUILTIN = {"wiki": DATA / "wiki_queries.jsonl", "deepconsult": DATA / "deepconsult_queries.csv"}
SPLITS = ("train", "heldout")


class QueryFileError(ValueError):
    """A queries file SCORE cannot use; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    gold_ids: tuple[str, ...] = ()  # passages a good answer cites (empty: no gold)
    gold_answer: str | None = None  # a short answer a good report states


@dataclass(frozen=True)
class QuerySet:
    """A query file's rows: those trained on, and those held out (its `split` column; none without it)."""

    train: list[Query]
    heldout: list[Query]

    @property
    def has_gold(self) -> bool:
        return any(q.gold_ids or q.gold_answer for q in self.train + self.heldout)


def queries_path(cfg: DataConfig) -> Path:
    return BUILTIN.get(cfg.queries, Path(cfg.queries))


def load_queries(cfg: DataConfig) -> list[Query]:
    """The queries trained on (all rows, or the `train` rows of a file with a `split` column)."""
    return load_query_set(cfg).train


def load_query_set(cfg: DataConfig) -> QuerySet:
    """Every row of the query file, checked: ids unique, texts present, splits known, no held-out query trained on."""
    path = queries_path(cfg)
    if not path.exists():
        raise QueryFileError(
            f"queries file {path} does not exist; set data.queries to a Parquet, JSONL or CSV file, 'wiki' or "
            "'deepconsult'"
        )
    if not path.is_file():
        raise QueryFileError(f"queries file {path} is not a file; set data.queries to a Parquet, JSONL or CSV file")
    frame = read_rows(path)
    if len(frame) == 0:
        raise QueryFileError(f"queries file {path} has no rows; it needs at least one query")
    needed = [c for c in (cfg.query_column, cfg.id_column) if c]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise QueryFileError(
            f"queries file {path} has no column {missing[0]!r} (columns: {list(frame.columns)}); "
            f"set data.query_column / data.id_column to the right names"
        )
    texts = frame[cfg.query_column]
    blank = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if blank:
        raise QueryFileError(
            f"queries file {path}: row(s) {blank[:5]} have an empty or missing query; remove or fill them"
        )
    id_column = cfg.id_column or ("id" if "id" in frame.columns else None)
    ids = [str(x) for x in frame[id_column]] if id_column else [f"q{i:04d}" for i in range(len(frame))]
    seen: set[str] = set()
    dupes = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
    if dupes:
        raise QueryFileError(
            f"queries file {path}: duplicate id(s) {dupes[:5]}; every query needs a unique {id_column!r}"
        )
    queries = [Query(i, t.strip(), *_gold(frame, n, path)) for n, (i, t) in enumerate(zip(ids, texts))]
    return _split(frame, queries, path)


def _gold(frame: pd.DataFrame, n: int, path: Path) -> tuple[tuple[str, ...], str | None]:
    """Row n's gold passage ids and gold answer (empty and None where the file has no such column or cell)."""
    ids = frame["gold_passage_ids"].iloc[n] if "gold_passage_ids" in frame.columns else None
    answer = frame["gold_answer"].iloc[n] if "gold_answer" in frame.columns else None
    if isinstance(ids, str):
        ids = [x.strip() for x in ids.split("|") if x.strip()]
    if ids is None or (not isinstance(ids, (list, tuple)) and pd.isna(ids)):
        ids = []
    if not isinstance(ids, (list, tuple)) and not hasattr(ids, "tolist"):
        raise QueryFileError(
            f"queries file {path}, row {n}: gold_passage_ids is {type(ids).__name__}; give a list of passage ids "
            'or ids joined by "|"'
        )
    answer = None if answer is None or (not isinstance(answer, str) and pd.isna(answer)) else str(answer).strip()
    return tuple(str(x) for x in list(ids)), answer or None


def _split(frame: pd.DataFrame, queries: list[Query], path: Path) -> QuerySet:
    if "split" not in frame.columns:
        return QuerySet(queries, [])
    splits = [str(s) for s in frame["split"]]
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise QueryFileError(f"queries file {path}: split value(s) {unknown[:3]}; use train or heldout")
    train = [q for q, s in zip(queries, splits) if s == "train"]
    heldout = [q for q, s in zip(queries, splits) if s == "heldout"]
    if not train:
        raise QueryFileError(f"queries file {path} has no row with split train; at least one query must train")
    leaked = sorted({q.text for q in train} & {q.text for q in heldout})
    if leaked:
        raise QueryFileError(
            f"queries file {path}: held-out quer(ies) also in training: {leaked[0][:80]!r}; a held-out query must "
            "never be trained on: remove it from one split"
        )
    return QuerySet(train, heldout)


def check_gold_ids(queries: QuerySet, corpus_ids: set[str], path: Path) -> None:
    """Every gold passage id is in the corpus searched (else gold recall could never be earned): raises naming it."""
    for q in queries.train + queries.heldout:
        missing = [i for i in q.gold_ids if i not in corpus_ids]
        if missing:
            raise QueryFileError(
                f"queries file {path}: query {q.id} has gold passage id {missing[0]!r}, which the corpus does not "
                "hold; fix the id, or search the corpus the queries were built from (search.corpus)"
            )


def read_rows(path: Path) -> pd.DataFrame:
    """A Parquet, JSONL or CSV file as a frame (CSV cells as strings); raises QueryFileError naming the problem."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        raw = path.read_bytes().decode("utf-8")  # strict: a wrong encoding fails here, not as mojibake later
        if suffix == ".csv":
            from io import StringIO

            return pd.read_csv(StringIO(raw), dtype=str, keep_default_na=False)
        if suffix in (".jsonl", ".json"):
            return pd.DataFrame(
                [_json_line(path, n, line) for n, line in enumerate(raw.splitlines(), 1) if line.strip()]
            )
    except QueryFileError:
        raise  # already names the file and the line
    except UnicodeDecodeError as e:
        raise QueryFileError(
            f"queries file {path} is not valid UTF-8 (byte {e.start}); re-encode it as UTF-8"
        ) from None
    except (json.JSONDecodeError, pd.errors.ParserError, ValueError) as e:
        raise QueryFileError(f"queries file {path} could not be parsed: {e}") from None
    raise QueryFileError(f"queries file {path} has suffix {suffix!r}; use .parquet, .jsonl or .csv")


def round_queries(queries: list[Query], per_round: int, round_idx: int, seed: int) -> list[Query]:
    """The round's queries: consecutive slices of one seeded shuffle, wrapping around at the end.

    >>> qs = [Query(f"q{i}", "x") for i in range(5)]
    >>> [q.id for q in round_queries(qs, 2, 0, seed=0)] != [q.id for q in round_queries(qs, 2, 1, seed=0)]
    True
    >>> len(round_queries(qs, 7, 0, seed=0))  # never more than the file holds
    5
    """
    order = np.random.default_rng(seed).permutation(len(queries))
    n = min(per_round, len(queries))
    start = (round_idx * n) % len(queries)
    picked = [order[(start + i) % len(queries)] for i in range(n)]
    return [queries[i] for i in picked]


def _json_line(path: Path, number: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise QueryFileError(f"queries file {path}, line {number}: not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(row, dict):
        raise QueryFileError(f"queries file {path}, line {number}: a JSON object is needed, not {type(row).__name__}")
    return row
