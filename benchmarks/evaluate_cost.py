"""Evaluate stage cost per report beside the generate stage's, on the same reports, in one run.

Target at default settings: evaluate <= 1.5x generate per report. The evaluator shares the encoding of
query + report + evidence across every criterion of both rubrics, so its cost grows with the number of
reports more than with the number of criteria.
Run: `python benchmarks/evaluate_cost.py [--config configs/default.yaml] [--set k=v ...]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from score.config import load_config
from score.models import Message, SamplingParams
from score.runner import run_stage
from score.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(args.config, [*args.overrides, f"store.root={tmp}", "run=bench"])
        ws = Workspace(cfg)
        backend = ws.backend(None)
        _ = ws.search  # built or loaded outside the timed part
        backend.sample([backend.render([Message("user", "Hi")])], SamplingParams(max_tokens=4))  # warm-up
        timings = {}
        for stage in ("generate-reports", "self-evaluate"):
            t0 = time.perf_counter()
            out = run_stage(ws, stage, 0, force=True)
            timings[stage] = time.perf_counter() - t0
        n = out.manifest["stats"]["reports"]
    gen, ev = timings["generate-reports"] / n, timings["self-evaluate"] / n
    print(f"reports: {n}; rubrics/query {cfg.harness.rubrics_per_query}, active dimensions {len(out.manifest['stats']['active_dimensions'])}, probe share {cfg.evaluate.probe_share}")
    print(f"generate-reports: {timings['generate-reports']:7.1f} s = {gen:5.1f} s/report")
    print(f"self-evaluate   : {timings['self-evaluate']:7.1f} s = {ev:5.1f} s/report")
    print(f"evaluate / generate per report: {ev / gen:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
