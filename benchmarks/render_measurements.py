"""Render the benchmarks' records (`benchmarks/records/*.json`, written by `common.write_record`) into
docs/measurements.md: newest first, one section a run with where and how it ran and its figures as short tables.
Findings (what a run showed, met or not) are written by people in docs/results.md; this page only shows numbers.

Run: `python benchmarks/render_measurements.py [--records DIR] [--out docs/measurements.md]`.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_ROWS = 30  # a longer list of rows stays in the record, named
LINE = 200  # the docs' longest line (tests/test_docs.py)


def cell(value) -> str:
    """A figure as a table cell: floats to 4 significant digits, lists of numbers joined.

    >>> cell(0.123456), cell([0.5, 1]), cell(True), cell("a|b"), cell("x" * 200)[-22:]
    ('0.1235', '0.5, 1', 'True', 'a/b', 'xxx... (in the record)')
    """
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple) and all(isinstance(v, int | float) for v in value):
        return ", ".join(cell(v) for v in value)
    return short(str(value).replace("|", "/").replace("\n", " "))


def short(text: str, limit: int = 150) -> str:
    """Text cut to fit a line of the page; the whole stays in the record."""
    return text if len(text) <= limit else text[: limit - 20] + "... (in the record)"


def tables(figures: dict) -> list[str]:
    """Scalars (and flat dicts, one level down) in one key/value table; each list of dict rows in a table of its
    own (up to MAX_ROWS rows).

    >>> print("\\n".join(tables({"seconds": 12, "base": {"auc": 0.5}, "rows": [{"arm": "a", "x": 1.0}]})))
    | figure | value |
    |---|---|
    | seconds | 12 |
    | base.auc | 0.5 |
    <BLANKLINE>
    **rows**
    <BLANKLINE>
    | arm | x |
    |---|---|
    | a | 1 |
    """
    scalars, out = [], []
    for key, value in figures.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            out += ["", f"**{key}**", ""] + _rows_table([{"": k, **v} for k, v in value.items()])
        elif isinstance(value, dict):
            scalars += [(f"{key}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            nested = any(isinstance(v, list) and v and isinstance(v[0], dict) for v in value[0].values())
            out += ["", f"**{key}**: {len(value)} rows of nested figures, in the record"] if nested else []
            out += [] if nested else ["", f"**{key}**", ""] + _rows_table(value)
        else:
            scalars.append((key, value))
    head = ["| figure | value |", "|---|---|"] + [f"| {k} | {cell(v)} |" for k, v in scalars] if scalars else []
    return head + out


def _numeric(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, int | float) for x in v)


def _rows_table(rows: list[dict], line: int = LINE) -> list[str]:
    """Rows as a table; one too wide for a line of `line` characters is split by columns into several tables, each
    repeating the leading columns that name a row (those holding no list, at most 3).

    >>> print("\\n".join(_rows_table([{"arm": "a", "x": [1.0, 2.0], "y": [3.0, 4.0]}], line=20)))
    | arm | x |
    |---|---|
    | a | 1, 2 |
    <BLANKLINE>
    | arm | y |
    |---|---|
    | a | 3, 4 |
    """
    if len(rows) > MAX_ROWS:
        return [f"({len(rows)} rows, in the record)"]
    keys = [k for k, v in rows[0].items() if not isinstance(v, dict) and (not isinstance(v, list) or _numeric(v))]
    cells = {k: [cell(r.get(k)) for r in rows] for k in keys}
    width = {k: max(len(k), *map(len, cells[k])) + 3 for k in keys}  # "| " before, " " after
    ids = list(itertools.takewhile(lambda k: not any(isinstance(r.get(k), list) for r in rows), keys))[:3]
    groups: list[list[str]] = []
    for k in (k for k in keys if k not in ids):
        if not groups or sum(width[c] for c in ids + groups[-1]) + width[k] + 1 > line:
            groups.append([])
        groups[-1].append(k)
    out: list[str] = []
    for group in groups or [[]]:
        cols = ids + group
        out += [""] if out else []
        out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        out += ["| " + " | ".join(cells[k][i] for k in cols) + " |" for i in range(len(rows))]
    return out


def section(record: dict, name: str) -> list[str]:
    """One run: a header with benchmark, date and commit; where it ran and the command; its figures."""
    m = record["machine"]
    dirty = " (uncommitted changes)" if record.get("dirty") else ""
    where = (
        f"{m.get('cores')} cores, {m.get('threads')} threads, GPU {m.get('gpu') or 'none'}, "
        f"load at start {cell(m.get('load_at_start'))}"
    )
    return [
        f"## {record['benchmark']}, {record['date']}, commit {record['commit']}{dirty}",
        "",
        f"`{short(record['command'], 120)}` on {where};",
        f"record `benchmarks/records/{name}`.",
        "",
        *tables(record["figures"]),
        "",
    ]


def render(records: Path) -> str:
    paths = sorted(records.glob("*.json"), key=lambda p: json.loads(p.read_text())["date"], reverse=True)
    lines = [
        "# Measurements",
        "",
        "Generated by `python benchmarks/render_measurements.py` from the records the benchmarks write",
        "(`benchmarks/records/`), newest first; do not edit by hand. What they showed: [results.md](results.md).",
        "Figures measured before records existed: [measurements-archive.md](measurements-archive.md).",
        "",
    ]
    for p in paths:
        lines += section(json.loads(p.read_text()), p.name)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", default=str(ROOT / "benchmarks" / "records"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "measurements.md"))
    args = parser.parse_args()
    Path(args.out).write_text(render(Path(args.records)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
