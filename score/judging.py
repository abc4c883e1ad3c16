"""Judge outside reports: `score judge --reports FILE --out FILE [--checkpoint CKPT]`, or `judge_reports()`.

Any (query, report) rows, from a Parquet, JSONL or CSV file or a DataFrame, are scored by the evaluator role
of a checkpoint under a run's latest harness, exactly as self-evaluate scores the solver's reports: J
rubrics per distinct query over the active dimensions, evidence checks on `search_depth` claims, every
criterion judged in `evaluate.passes` passes (the score `evaluate.score_source` names). No corruption
probes, no sibling report beside the judged one (each row is scored as it is, whatever else the file holds)
and no rewards. The output keeps every input column (an `id`, say) and adds `overall` (0-1: the
rubric-weighted dimension scores / 10, averaged over rubrics and passes, what a solver's reward is made of
before its validity gate), one `dim_<dimension>` column per active dimension (0-10) and `criteria` (every
criterion's score).
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from score.benchmark import BenchmarkError
from score.evaluator import Evaluation, evaluate_reports
from score.evaluator.statistics import cell_means, groups_from_rows, item_values
from score.harness import Harness
from score.history import harness_for_round, latest_or_base, resolve
from score.pipeline import EVOLVE, derive_seed
from score.queries import QueryFileError, read_rows
from score.store.layout import finished_rounds
from score.workspace import Workspace


def latest_harness(ws: Workspace) -> tuple[Harness, str]:
    """The harness the run's next round would evaluate under (the seed harness when nothing evolved yet)."""
    evolved = finished_rounds(ws.store, ws.cfg.run, EVOLVE.folder)
    return harness_for_round(ws, evolved[-1] + 1 if evolved else 0)


def judge_reports(
    ws: Workspace,
    frame: pd.DataFrame,
    checkpoint: str | None = None,
    query_column: str = "query",
    report_column: str = "report",
) -> pd.DataFrame:
    """`frame` with `overall`, `dim_<dimension>` and `criteria` columns added (see the module docstring)."""
    _check(frame, query_column, report_column)
    label, policy = resolve(ws, checkpoint or latest_or_base(ws))
    harness, _ = latest_harness(ws)
    rows = _report_rows(frame[query_column], frame[report_column])
    seed = derive_seed(ws.cfg.seed, 0, "judge")
    judged = evaluate_reports(Evaluation(ws, ws.backend(policy), harness, seed, outside=True), rows)
    overall, per_dim, criteria = _per_row(judged, rows, ws.cfg.evaluate.passes)
    out = frame.copy()
    ids = [r["trajectory_id"] for r in rows]
    out["overall"] = [sum(overall[t]) / len(overall[t]) if overall[t] else None for t in ids]
    for d in [d.id for d in harness.active]:
        out[f"dim_{d}"] = [sum(v) / len(v) if (v := per_dim[t][d]) else None for t in ids]
    out["criteria"] = [criteria[t] for t in ids]
    out.attrs.update(
        {
            "checkpoint": policy.name,
            "checkpoint_label": label,
            "harness_version": str(harness.version),
            "run": ws.cfg.run,
        }
    )
    return out


def _check(frame: pd.DataFrame, query_column: str, report_column: str) -> None:
    missing = [c for c in (query_column, report_column) if c not in frame.columns]
    if missing:
        raise BenchmarkError(
            f"reports have no column {missing[0]!r} (columns: {list(frame.columns)}); they need a query and a "
            "report column"
        )
    blank = [i for i, q in enumerate(frame[query_column]) if not isinstance(q, str) or not q.strip()]
    if blank:
        raise BenchmarkError(f"reports row(s) {blank[:5]} have an empty query; fill or remove them")
    if len(frame) == 0:
        raise BenchmarkError("there are no reports to judge")


def _report_rows(queries, reports) -> list[dict]:
    """The rows as evaluate_reports() takes them (shaped like reports.parquet); rows of one query share its
    rubrics."""
    rows, per_query = [], defaultdict(int)
    for i, (q, text) in enumerate(zip(queries, reports)):
        qid = hashlib.sha256(q.strip().encode()).hexdigest()[:12]
        report = "" if text is None else str(text)
        rows.append({"query_id": qid, "query": q.strip(), "sample_idx": per_query[qid], "trajectory_id": f"row-{i}",
                     "report": report, "sources": []})  # fmt: skip
        per_query[qid] += 1
    return rows


def _per_row(judged, rows: list[dict], passes: int) -> tuple[dict, dict, dict]:
    """Per row: its rubric scores (one per rubric and pass, as a solver's reward has them), its dimension means
    (one per rubric and pass that scored the dimension), and every criterion's score."""
    criteria: dict[str, list[dict]] = defaultdict(list)
    for s in judged.score_rows:
        criteria[s["trajectory_id"]].append(
            {k: s[k] for k in ("rubric_idx", "pass_idx", "dimension", "criterion", "score")}
        )
    cells_of = {g.query_id: cell_means(g) for g in groups_from_rows(judged.score_rows)}
    overall, per_dim = {}, defaultdict(lambda: defaultdict(list))
    for r in rows:
        tid, rubrics, cells = r["trajectory_id"], judged.rubrics[r["query_id"]], cells_of.get(r["query_id"], {})
        overall[tid] = item_values(rubrics, cells, tid, passes=passes)
        for j, rub in enumerate(rubrics):
            for p in range(passes):
                for d in rub.weights:
                    if (j, p, tid, "", d) in cells:
                        per_dim[tid][d].append(cells[(j, p, tid, "", d)])
    return overall, per_dim, criteria


def judge_file(ws: Workspace, reports: Path, out: Path, checkpoint: str | None = None) -> pd.DataFrame:
    """Read `reports` (Parquet/JSONL/CSV), judge them, and write `out` (Parquet) in one atomic rename: a
    failure anywhere leaves no output file, and an existing one as it was."""
    if out.suffix.lower() != ".parquet":
        raise BenchmarkError(f"--out {out} must end in .parquet (the judged rows are written as Parquet)")
    if not out.parent.exists():
        raise BenchmarkError(f"--out folder {out.parent} does not exist; create it first")
    if not reports.is_file():
        raise BenchmarkError(
            f"reports file {reports} does not exist; pass a Parquet, JSONL or CSV file with query and report columns"
        )
    try:
        frame = read_rows(reports)
    except QueryFileError as e:
        raise BenchmarkError(str(e).replace("queries file", "reports file")) from None
    judged = judge_reports(ws, frame, checkpoint)
    table = pa.Table.from_pandas(judged, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), **{f"score.{k}".encode(): str(v).encode() for k, v in judged.attrs.items()}}
    )
    tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out)
    return judged
