"""Query sets: load a Parquet, JSONL or CSV file of (id, query) rows, strictly, and pick each round's share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from score.config import DataConfig

BUILTIN = {"deepconsult": Path(__file__).parent / "datasets" / "deepconsult_queries.csv"}


class QueryFileError(ValueError):
    """A queries file SCORE cannot use; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class Query:
    id: str
    text: str


def queries_path(cfg: DataConfig) -> Path:
    return BUILTIN.get(cfg.queries, Path(cfg.queries))


def load_queries(cfg: DataConfig) -> list[Query]:
    path = queries_path(cfg)
    if not path.exists():
        raise QueryFileError(
            f"queries file {path} does not exist; set data.queries to a Parquet, JSONL or CSV file or to 'deepconsult'"
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
    ids = [str(x) for x in frame[cfg.id_column]] if cfg.id_column else [f"q{i:04d}" for i in range(len(frame))]
    seen: set[str] = set()
    dupes = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
    if dupes:
        raise QueryFileError(
            f"queries file {path}: duplicate id(s) {dupes[:5]}; every query needs a unique {cfg.id_column!r}"
        )
    return [Query(i, t.strip()) for i, t in zip(ids, texts)]


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
