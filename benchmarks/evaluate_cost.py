"""Evaluate stage cost per report beside the generate stage's, on the same reports, in one run.

Target at default settings: evaluate <= 1.5x generate per report. The evaluator shares the encoding of
query + report + evidence across every criterion of both rubrics, so its cost grows with the number of
reports more than with the number of criteria.
Run: `python benchmarks/evaluate_cost.py [--config configs/default.yaml] [--set k=v ...]`.
"""

from __future__ import annotations

import time

from common import bench_workspace

from score.pipeline import EvaluateStats
from score.runner import run_stage


def main() -> None:
    with bench_workspace(__doc__.split("\n\n")[0]) as ws:
        cfg = ws.cfg
        timings = {}
        for stage in ("generate-reports", "self-evaluate"):
            t0 = time.perf_counter()
            out = run_stage(ws, stage, 0, force=True)
            timings[stage] = time.perf_counter() - t0
        stats = out.manifest.stats_as(EvaluateStats)
        n = stats.reports
    gen, ev = timings["generate-reports"] / n, timings["self-evaluate"] / n
    print(
        f"reports: {n}; rubrics/query {cfg.evaluate.rubrics_per_query}, active dimensions "
        f"{len(stats.active_dimensions)}, probe share {cfg.evaluate.probe_share}"
    )
    print(f"generate-reports: {timings['generate-reports']:7.1f} s = {gen:5.1f} s/report")
    print(f"self-evaluate   : {timings['self-evaluate']:7.1f} s = {ev:5.1f} s/report")
    print(f"evaluate / generate per report: {ev / gen:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
