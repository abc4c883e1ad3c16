"""Evaluator learning: the evaluator trained over R rounds on training queries with the solver's loss off
(`train.role_weight.solver=0`: only rubrics, judgements and verdicts are trained), measured every round on held-out
queries' reports and their corrupted copies; several seeds; the base model's figures beside.

Held-out set: `--heldout` queries no round trains on, `generate.samples_per_query` reports each, written once
by the base model and kept fixed (the weights are shared, so a report the trained model wrote would move with
the judge; fixed reports measure the judge alone), every report also judged as a corrupted copy (kinds in turn:
distinct (report, corruption) pairs). Each checkpoint (the base model once, then the checkpoint after each
round 0..R-1 of each seed) judges them with
the real self-evaluate phases (`score.stages.evaluate.judge`, the seed harness, its own sampling seed) and the
same statistics as a round (`round_statistics`):
- detection: distinct probed reports whose copy got a lower mean written score than the original on the
  dimensions its corruption damages (ties half), with a 95% Wilson interval over those pairs;
- consistency: mean consistency reward of the judgement columns (leave-one-out agreement, discrimination floor);
- spread: mean within-column std of the written scores; unparsable: share of judgements with no score;
- anchor detection: mean anchor credit of the evidence verdicts (a claim against the passages it cites vs the
  same claim with an entity swapped: 1 when the anchor got less support, ties half).
Training rounds run the real stages (generate-reports, self-evaluate, harness-evolve with `harness.mode=static`,
train) through the runner, each seed in its own store.

Run: `python benchmarks/evaluator_learning.py [--rounds 3] [--seeds 0,1,2] [--heldout 6] [--set key=value ...]`.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

from score.checkpoints import Policy, base_policy, policy_for_round
from score.config import load_config
from score.harness import seed_harness
from score.pipeline import EVALUATE, EVOLVE, GENERATE, TRAIN, TrainStats
from score.queries import round_queries
from score.runner import run_stage
from score.stages import generate
from score.stages.evaluate import judge
from score.stages.evaluate.statistics import groups_from_rows, round_statistics
from score.workspace import Workspace

DEFAULTS = [  # every one can be overridden with --set
    "data.queries_per_round=3",
    "generate.report_tokens=160",
    "harness.mode=static",
    "train.role_weight.solver=0",
    "evaluate.probe_share=0.5",
]


def wilson(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion observed over n trials.

    >>> [round(x, 3) for x in wilson(0.75, 24)]
    [0.551, 0.88]
    """
    if n == 0:
        return 0.0, 1.0
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def measure(ws: Workspace, policy: Policy, reports: list[dict], seed: int) -> dict:
    """The judge `policy` on the fixed held-out reports, every one also as a corrupted copy."""
    harness = seed_harness(ws.cfg.harness)
    judged = judge(ws, ws.backend(policy), reports, harness, seed, probe_share=1.0, depth_probe_share=0.0)
    stats = round_statistics(
        ws.cfg,
        0,
        judged.by_query,
        judged.rubrics,
        groups_from_rows(judged.score_rows),
        judged.evidence_rows,
        harness,
        judged.judgements_by_query(),
    )
    s = stats.summary
    low, high = wilson(s["detection"], s["probed_reports"])
    keys = (
        "detection",
        "probed_reports",
        "agreement",
        "score_spread",
        "unparsable_rate",
        "anchor_detection",
        "anchors",
    )
    return {**{k: s[k] for k in keys}, "low": low, "high": high}


def line(label: str, m: dict) -> str:
    return (
        f"  {label:<16} detection {m['detection']:.3f} [{m['low']:.3f}, {m['high']:.3f}] over {m['probed_reports']} "
        f"pairs | consistency {m['agreement']:.3f} | spread {m['score_spread']:.2f} | unparsable "
        f"{m['unparsable_rate']:.3f} | anchor detection {m['anchor_detection']:.3f} over {m['anchors']} pairs"
    )


def run_seed(args, seed: int, heldout_reports: list[dict], tmp: str) -> list[dict]:
    """R training rounds of one seed; the held-out measure of every round's checkpoint."""
    cfg = load_config(
        args.config,
        [*DEFAULTS, *args.overrides, f"store.root={tmp}/seed-{seed}", f"seed={seed}", "run=evaluator-learning",
         f"campaign.rounds={args.rounds}"],
    )  # fmt: skip
    ws = Workspace(cfg)
    measures = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        for spec in (GENERATE, EVALUATE, EVOLVE):
            run_stage(ws, spec, r)
        s = run_stage(ws, TRAIN, r).manifest.stats_as(TrainStats)
        measures.append(measure(ws, policy_for_round(ws, r + 1), heldout_reports, seed=1000 + seed))
        print(
            line(f"seed {seed} round {r}", measures[-1])
            + f" | trained {s.judgement_samples} judgements, {s.verdict_samples} verdicts, "
            f"{s.evaluator_samples - s.judgement_samples - s.verdict_samples} rubrics, "
            f"{s.evaluator_flat_groups}/{s.evaluator_groups} flat groups, {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return measures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--heldout", type=int, default=6, help="held-out queries")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(args.config, [*DEFAULTS, *args.overrides, f"store.root={tmp}/heldout"])
        ws = Workspace(cfg)
        trained = {
            q.id
            for s in seeds
            for r in range(args.rounds)
            for q in round_queries(ws.queries, cfg.data.queries_per_round, r, s)
        }
        heldout = [q for q in ws.queries if q.id not in trained][: args.heldout]
        reports, _ = generate.research(ws, heldout, base_policy(cfg.model), seed=12345)
        print(
            f"held-out: {len(heldout)} queries x {cfg.generate.samples_per_query} reports by the base model", flush=True
        )
        base = measure(ws, base_policy(cfg.model), reports, seed=999)  # the same weights for every seed
        print(line("base", base), flush=True)
        results = {s: run_seed(args, s, reports, tmp) for s in seeds}
    print(f"\n{len(seeds)} seeds x {args.rounds} rounds, {(time.perf_counter() - t0) / 60:.1f} min")
    print(line("base", base))
    for s, measures in results.items():
        for r, m in enumerate(measures):
            print(line(f"seed {s} round {r}", m))
    last = [m[-1] for m in results.values()]
    hit = all(m["detection"] >= 0.75 and m["low"] > 0.5 for m in last)
    print(f"goal (last-round detection >= 0.75 with the interval's lower bound above 0.5 in every seed): {hit}")


if __name__ == "__main__":
    main()
