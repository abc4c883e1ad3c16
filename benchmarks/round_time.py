"""One round of a config (round 0, no Prefect), stage by stage: how long a round takes at this commit.

Runs generate-reports, self-evaluate, harness-evolve and train of round 0 on a temporary store, the model and the
search index loaded and warm first (as in a campaign after its first stage), and prints each stage's seconds, the
round's, the content fingerprint of each stage's files (equal fingerprints: identical artifacts) and how much work
it did (reports, tokens written, judgements, samples and tokens trained: seeded samples that differ make
different work). With
`--workers N` (N > 1) the sharded stages run as N shards (generate.shards, evaluate.shards), N at once, each in
its own process, as the round flow's process workers run them (without Prefect: a process pool calling
`run_shard`), the stage closed after; give each worker its share of the cores (--set model.threads=...).

The speed of a commit beside another's, side by side on the same day: run this file against each checkout,
`PYTHONPATH=<checkout> python benchmarks/round_time.py --config <checkout>/configs/default.yaml`, one after the
other with nothing else running (the script uses only what the stages have long had: run_stage, Workspace).
Run: `python benchmarks/round_time.py [--config configs/default.yaml] [--workers N] [--set key=value ...]`.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

from common import bench_args, warm_workspace

from score.pipeline import STAGES
from score.runner import run_stage
from score.workspace import Workspace

SIZE = ("reports", "completion_tokens", "tokens_per_second", "judgements", "samples", "trainable_tokens")  # work done


def shard(cfg, stage: str, index: int, holder: str) -> float:
    """One shard in a worker process (its own Workspace and model), for the lease holder; its seconds."""
    from score.runner import run_shard  # not at the top: older checkouts have none (and never come here)

    return run_shard(Workspace(cfg), stage, 0, index, holder=holder).manifest.seconds


def run_round(ws: Workspace, workers: int) -> None:
    """Round 0's stages in order, timed; with `workers` > 1 a sharded stage's shards first, that many at once."""
    total = 0.0
    for spec in STAGES:
        t0 = time.perf_counter()
        if workers > 1 and spec.shards:
            from score.store.lease import holder, holding  # not at the top: older checkouts have no holder()

            with holding(ws.store, ws.cfg.run), ProcessPoolExecutor(workers) as pool:  # workers write for this one
                list(pool.map(shard, [ws.cfg] * workers, [spec.name] * workers, range(workers), [holder()] * workers))
        outcome = run_stage(ws, spec, 0)
        seconds = time.perf_counter() - t0
        total += seconds
        work = {k: v for k, v in outcome.manifest.stats.items() if k in SIZE}
        print(f"{spec.name:17s} {seconds:7.1f} s   files {outcome.manifest.content_fingerprint()}   {work}", flush=True)
    print(f"round 0, every stage: {total:7.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="N > 1: the sharded stages as N shards, N at once")
    args = bench_args("", parser=parser)
    shards = [f"generate.shards={args.workers}", f"evaluate.shards={args.workers}"] if args.workers > 1 else []
    with warm_workspace(args.config, [*args.overrides, *shards]) as ws:
        print(f"commit code from {os.path.dirname(os.path.dirname(__import__('score').__file__))}", flush=True)
        run_round(ws, args.workers)


if __name__ == "__main__":
    main()
