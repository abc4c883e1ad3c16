"""Rows as types: each artifact's row declared once (`score.store.schemas`), as a frozen dataclass whose fields
carry their Arrow type, help text and (where `score inspect` shows it) a label; the Parquet schema derives from it
(`arrow_schema`), and so do the statistics that repeat a row (self-evaluate's extend `SummaryRow`) and inspect's
labels. Adding a column touches one place. `Store.read_rows` reads a file as its rows; writers take rows or dicts
(most stages still build and read dicts: the next step of this move).
"""

from __future__ import annotations

from dataclasses import MISSING, Field, field, fields
from functools import cache
from typing import Any

import pyarrow as pa


def column(arrow: pa.DataType, help: str = "", *, default: Any = MISSING, factory: Any = MISSING, label: str = "",
           nullable: bool = True) -> Any:  # fmt: skip
    """A dataclass field that is also a Parquet column: its Arrow type, whether it may be null, what it means, and
    the label `score inspect` shows it under ("" for a column inspect leaves out)."""
    meta = {"arrow": arrow, "nullable": nullable, "help": help, "label": label}
    return field(default=default, default_factory=factory, metadata=meta)


def columns(row: type) -> list[Field]:
    """The fields of `row` that are Parquet columns, in order."""
    return [f for f in fields(row) if "arrow" in f.metadata]


@cache
def arrow_schema(row: type) -> pa.Schema:
    """The Parquet schema of a row type.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class R:
    ...     n: int = column(pa.int32(), "a count", default=0, nullable=False)
    ...     names: list[str] = column(pa.list_(pa.string()), factory=list)
    >>> arrow_schema(R).field("n"), arrow_schema(R).field("names").type
    (pyarrow.Field<n: int32 not null>, ListType(list<item: string>))
    """
    return pa.schema([pa.field(f.name, f.metadata["arrow"], nullable=f.metadata["nullable"]) for f in columns(row)])


def labels(row: type) -> list[tuple[str, str]]:
    """(column, label) of the columns `score inspect` shows, in order."""
    return [(f.name, f.metadata["label"]) for f in columns(row) if f.metadata["label"]]
