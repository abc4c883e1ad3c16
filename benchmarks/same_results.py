"""Do two stores hold the same results? Compares every file of every finished stage folder of a run, file by
file: Parquet tables by content (schema and every value, wall-clock columns left out), other files (a
checkpoint's weights, its JSON) by their bytes. Manifests are not compared (they hold timings and versions).

Two things differ between equal runs and are normalised: the store's own address, which reports record as the
checkpoint that sampled them (compared with the root replaced by `<store>`), and the order of lists of names
in JSON files (peft writes an adapter's `target_modules` from a set, in an order that changes from process to
process).

Run: `python benchmarks/same_results.py STORE_A STORE_B [--run ci] [--record --note "A: <commit>, B: <commit>"]`;
exits 1 when anything differs; `--record` writes the comparison as a benchmark record (benchmarks/records/).
Used to check that a restructuring changed no result: two rounds of configs/ci.yaml before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from common import write_record

TIMING_COLUMNS = {"seconds"}  # steps.parquet: wall-clock seconds of each optimizer step


TRACKER_FOLDERS = {"tensorboard", "wandb"}  # score.tracking's views of the run: timestamps, not results


def _a_view(parts: tuple[str, ...]) -> bool:
    """A tracker's folder or the run's plots (RUN/plots, RUN/plots-vs-X): drawn from the results, not results."""
    return bool(TRACKER_FOLDERS & set(parts)) or parts[0].startswith("plots")


def files_of(root: Path) -> dict[str, Path]:
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "_manifest.json" and not _a_view(p.relative_to(root).parts)
    }


def _sorted_names(obj):
    if isinstance(obj, dict):
        return {k: _sorted_names(v) for k, v in obj.items()}
    if isinstance(obj, list):
        items = [_sorted_names(v) for v in obj]
        return sorted(items) if all(isinstance(v, str) for v in items) else items
    return obj


def _column(table: pa.Table, name: str, root: Path) -> pa.ChunkedArray:
    col = table.column(name)
    if pa.types.is_string(col.type):
        return pc.replace_substring(col, str(root), "<store>")
    return col


def differs(a: Path, b: Path, roots: tuple[Path, Path]) -> str:
    """'' when equal, else what differs."""
    if a.suffix == ".json":
        same = _sorted_names(json.loads(a.read_text())) == _sorted_names(json.loads(b.read_text()))
        return "" if same else "JSON differs"
    if a.suffix != ".parquet":
        same = hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
        return "" if same else "bytes differ"
    ta, tb = pq.read_table(a), pq.read_table(b)
    if not ta.schema.equals(tb.schema, check_metadata=False):
        return f"schema differs: {ta.schema.names} vs {tb.schema.names}"
    if ta.num_rows != tb.num_rows:
        return f"{ta.num_rows} vs {tb.num_rows} rows"
    bad = [
        c
        for c in ta.column_names
        if c not in TIMING_COLUMNS and not _column(ta, c, roots[0]).equals(_column(tb, c, roots[1]))
    ]
    return f"column(s) {bad} differ" if bad else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--run", default="ci")
    parser.add_argument("--record", action="store_true", help="write the comparison as a record")
    parser.add_argument("--note", default="", help="what A and B are (commits, configs), kept in the record")
    args = parser.parse_args()
    fa, fb = files_of(args.a / args.run), files_of(args.b / args.run)
    problems = [f"only in {args.a}: {n}" for n in sorted(set(fa) - set(fb))] + [
        f"only in {args.b}: {n}" for n in sorted(set(fb) - set(fa))
    ]
    for name in sorted(set(fa) & set(fb)):
        if why := differs(fa[name], fb[name], (args.a, args.b)):
            problems.append(f"{name}: {why}")
    print(f"compared {len(set(fa) & set(fb))} files of run {args.run!r}: {len(problems)} difference(s)")
    for p in problems:
        print("  " + p)
    if args.record:
        figures = {"run": args.run, "files": len(set(fa) & set(fb)), "differences": problems, "note": args.note}
        print(write_record("same_results", args, None, figures))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
