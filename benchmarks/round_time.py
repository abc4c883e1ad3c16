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
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

from score.config import load_config
from score.models import Message, SamplingParams
from score.pipeline import STAGES
from score.runner import run_stage
from score.workspace import Workspace

SIZE = (
    "reports",
    "completion_tokens",
    "tokens_per_second",
    "judgements",
    "samples",
    "trainable_tokens",
)  # the work done


def shard(overrides: list[str], config: str, stage: str, index: int, holder: str) -> float:
    """One shard in a worker process (its own Workspace and model), for the lease holder; its seconds."""
    from score.runner import run_shard

    return run_shard(Workspace(load_config(config, overrides)), stage, 0, index, holder=holder).manifest.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--workers", type=int, default=1, help="N > 1: the sharded stages as N shards, N at once")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    shards = [f"generate.shards={args.workers}", f"evaluate.shards={args.workers}"] if args.workers > 1 else []
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [*args.overrides, *shards, f"store.root={tmp}", "run=bench"]
        ws = Workspace(load_config(args.config, overrides))
        backend = ws.backend()
        _ = ws.search  # index built or loaded outside the timed part
        backend.sample([backend.render([Message("user", "Hi")])], SamplingParams(max_tokens=4))  # warm-up
        print(f"commit code from {os.path.dirname(os.path.dirname(__import__('score').__file__))}", flush=True)
        total = 0.0
        pool = ProcessPoolExecutor(args.workers) if args.workers > 1 else None
        for spec in STAGES:
            t0 = time.perf_counter()
            if pool and spec.shards:
                from score.lease import holder, holding  # not at the top: older checkouts have no holder()

                with holding(ws.store, ws.cfg.run):  # the workers write on this process's behalf
                    calls = [(overrides, args.config, spec.name, i, holder()) for i in range(args.workers)]
                    list(pool.map(shard, *zip(*calls)))
            outcome = run_stage(ws, spec, 0)
            seconds = time.perf_counter() - t0
            total += seconds
            work = {k: v for k, v in outcome.manifest.stats.items() if k in SIZE}
            print(
                f"{spec.name:17s} {seconds:7.1f} s   files {outcome.manifest.content_fingerprint()}   {work}",
                flush=True,
            )
        print(f"round 0, every stage: {total:7.1f} s", flush=True)


if __name__ == "__main__":
    main()
