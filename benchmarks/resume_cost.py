"""A resumed rerun of a finished round beside the round itself, in one run.

Runs every stage of round 0 (generate-reports, self-evaluate, harness-evolve, train) on a temporary
store, then runs them all again: each finds its manifest matching and skips. The rerun's cost is reading
manifests and fingerprinting inputs (upstream manifests, the queries file, the corpus and its index),
in a fresh Workspace as a new process would.
Target: rerun / round <= 0.03. Prefect is left out on both sides (its temporary server costs ~10 s per
process, whatever the work). Beside it, the cost of the integrity check (every file's size and sha256 against
its manifest, `Store.verify`): the same rerun with the check switched off, in a third fresh Workspace.
Target: verifying rerun / trusting rerun <= 1.10.
Run: `python benchmarks/resume_cost.py [--config configs/ci.yaml] [--set key=value ...]`.
"""

from __future__ import annotations

import time

from common import bench_workspace

from score.pipeline import STAGES
from score.runner import run_stage
from score.workspace import Workspace


def main() -> None:
    with bench_workspace(__doc__.split("\n\n")[0], default_config="configs/ci.yaml") as ws:
        t0 = time.perf_counter()
        first = [run_stage(ws, spec, 0) for spec in STAGES]
        work = time.perf_counter() - t0
        t0 = time.perf_counter()
        fresh = Workspace(ws.cfg)  # as a new process would: queries, corpus and index fingerprinted again
        again = [run_stage(fresh, spec, 0) for spec in STAGES]
        rerun = time.perf_counter() - t0
        trusting = Workspace(ws.cfg)
        trusting.store.verify = lambda folder, manifest: []  # the manifests taken at their word, as before
        t0 = time.perf_counter()
        assert all(run_stage(trusting, spec, 0).skipped for spec in STAGES)
        unverified = time.perf_counter() - t0
    assert not any(o.skipped for o in first) and all(o.skipped for o in again), "the rerun must skip every stage"
    for o in first:
        print(f"{o.manifest.stage:17s} {o.manifest.seconds:7.1f} s")
    print(f"round 0, every stage: {work:7.1f} s")
    print(f"rerun, all skipped  : {rerun:7.3f} s")
    print(f"rerun / round: {rerun / work:.4f}  (target <= 0.03)")
    print(f"rerun without the integrity check: {unverified:7.3f} s")
    print(f"verifying / trusting: {rerun / unverified:.2f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
