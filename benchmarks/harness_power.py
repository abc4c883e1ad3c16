"""How often each meta-harness rule fires by chance, and how often on a planted effect, at the config's real sizes.

For every rule: statistics simulated round after round at the config's sizes (queries per round, K reports per
query, the probed and depth-probed shares, the corruption kinds in turn and the dimensions each damages, claims per
report), reduced by the stage's own code (`score.evaluator.statistics._dimension_stats`) and read by the real
rules (`score.harness.evolve`, the harness state carried from round to round as in a campaign). Two worlds per rule:
nothing changed (the null: a healthy dimension, a plain search, a judge that is not gamed) and a planted effect of
stated size. Reported: the false-fire rate per rule per round under the null (goal <= 5%), and the power, the share
of campaigns of `--rounds` rounds in which the rule fired under the effect (goal >= 80%); then the same at larger
sizes (`--scales`: queries per round multiplied), to say what size would reach the goal where the default does not.

Noise scales default to what `make run` measured on this machine (2026-11-28, SmolLM2-135M, scores 0-10): within-
query std of a dimension's per-report score about 0.2, between-query std about 0.1, within-query correlation between
dimensions 0.93-0.97 (a halo: the 135M judge scores every dimension of a report alike), fully valid reports 0-19%.
The per-claim support change of a deeper re-check (`--claim-sd`) is an assumption, stated in the output.

Run: `python benchmarks/harness_power.py [--config configs/default.yaml] [--sims 2000] [--rounds 4] [--scales 1,2,4]`
(CPU only, about a minute).
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from dataclasses import dataclass, replace

from score.config import load_config
from score.evaluator.statistics import _dimension_stats, _Pairs, _PerDimension
from score.harness import Alarm, Harness, RoundSignals, evolve, seed_harness
from score.intervals import mean_interval
from score.stages.evolve import dimension_stats


@dataclass
class Sizes:
    queries: int
    k: int
    probe_share: float
    depth_probe_share: float
    claims: int  # claims checked per report (search_depth)
    kinds: list[str]
    damaged: dict[str, list[str]]
    valid_share: float
    confidence: float  # harness.rules.confidence: the bound the statistics carry


@dataclass
class World:
    """What one simulated round looks like; every field has a null value and a rule moves one."""

    mean: float = 6.3  # a dimension's mean score
    within_sd: float = 0.2
    between_sd: float = 0.1
    halo: float = 0.5  # within-query correlation between two dimensions
    detect: float = 0.8  # P(original outscores its corrupted copy) on a damaged dimension
    depth_shift: float = 0.0  # mean signed support change when the same claims are searched more
    claim_sd: float = 0.15
    top_share: float = 0.3  # fully valid reports at the top of the reward
    in_loop: float = 0.0  # in-loop reward change between rounds
    heldout: float = 0.0  # held-out benchmark change between rounds
    heldout_sd: float = 0.03


def simulate_round(rng: random.Random, sizes: Sizes, harness: Harness, w: dict[str, World], rs: World):
    """One round's dimension statistics (through the stage's reduction) and round statistics."""
    dims = [d.id for d in harness.dimensions if d.status != "retired"]
    by_query, per_report = {}, defaultdict(dict)
    for q in range(sizes.queries):
        tids = [f"q{q}-{k}" for k in range(sizes.k)]
        by_query[f"q{q}"] = [{"trajectory_id": t} for t in tids]
        b = rng.gauss(0, 1)
        for t in tids:
            h = rng.gauss(0, 1)  # the report's halo, shared by every dimension
            for d in dims:
                wd = w.get(d, World())
                e = rng.gauss(0, 1)
                z = wd.halo**0.5 * h + (1 - wd.halo) ** 0.5 * e
                per_report[d][t] = wd.mean + wd.between_sd * b + wd.within_sd * z
    probe_pairs: dict[str, _Pairs] = defaultdict(_Pairs)
    reports = [t for g in by_query.values() for t in (r["trajectory_id"] for r in g)]
    chosen = [t for t in reports if rng.random() < sizes.probe_share]
    for i, _ in enumerate(chosen):
        for d in sizes.damaged.get(sizes.kinds[i % len(sizes.kinds)], []):
            if d in dims:
                hit = rng.random() < w.get(d, World()).detect
                probe_pairs[d].add([(1.0, 0.0) if hit else (0.0, 1.0)])
    measured = _PerDimension(per_report, probe_pairs, set(dims))
    rows = _dimension_stats(0, by_query, measured, harness, sizes.damaged, sizes.confidence)
    stats = {r["dimension"]: dimension_stats(r) for r in rows}
    deep = [t for t in reports if rng.random() < sizes.depth_probe_share]
    changes = [rng.gauss(rs.depth_shift, rs.claim_sd) for _ in deep for _ in range(sizes.claims)]
    valid = sum(rng.random() < sizes.valid_share for _ in reports)
    top = sum(rng.random() < rs.top_share for _ in range(valid))
    mean, low, high = mean_interval(changes) if len(changes) > 1 else (0.0, 0.0, 0.0)
    alarm = Alarm(rng.gauss(rs.in_loop, 0.03), rng.gauss(rs.heldout, rs.heldout_sd), rs.heldout_sd, (0, 1))
    return stats, RoundSignals(valid, top, len(changes), mean, max(low, -9), min(high, 9), (), alarm)


@dataclass
class Scenario:
    rule: str  # a decision of this rule, on any target, counts as the rule firing
    null: str
    effect: str
    worlds: object  # (effect: bool) -> (per-dimension worlds, round world)


def scenarios() -> list[Scenario]:
    def dim(name, null: World, effect: World):
        return lambda on: ({name: effect if on else null}, World())

    def rnd(null: World, effect: World):
        return lambda on: ({}, effect if on else null)

    return [
        Scenario(
            "saturation",
            "readability mean 8.0 (below the 8.5 bar)",
            "mean 9.0, within-query std 0.15",
            dim("readability", World(mean=8.0), World(mean=9.0, within_sd=0.15)),
        ),
        Scenario(
            "redundancy",
            "within-query correlation 0.6 with every other dimension",
            "insight and comprehensiveness correlate 0.98 within queries",
            lambda on: (
                {"insight": World(halo=0.98 if on else 0.6), "comprehensiveness": World(halo=0.98 if on else 0.6)},
                World(),
            ),
        ),
        Scenario(
            "corruption",
            "detection 0.80 (a working dimension)",
            "detection 0.50 (chance)",
            dim("insight", World(detect=0.8), World(detect=0.5)),
        ),
        Scenario(
            "admission",
            "candidate at chance, detection 0.50 (spread 0.5)",
            "detection 0.85 (spread 0.5)",
            dim("factual_accuracy", World(detect=0.5, within_sd=0.5), World(detect=0.85, within_sd=0.5)),
        ),
        Scenario(
            "search_hops",
            "more search moves no verdict (mean change 0)",
            "mean support change +0.15 per claim",
            rnd(World(), World(depth_shift=0.15)),
        ),
        Scenario(
            "strictness", "30% of fully valid reports at the top", "90% at the top", rnd(World(), World(top_share=0.9))
        ),
        Scenario(
            "alarm",
            "no change in- or out-of-loop (held-out std 0.03)",
            "in-loop +0.03 while held-out -0.10",
            rnd(World(), World(in_loop=0.03, heldout=-0.10)),
        ),
    ]


def campaign(rng, sizes: Sizes, cfg, s: Scenario, effect: bool, rounds: int) -> list[bool]:
    """Per round: did the rule fire? The harness is carried from round to round (gathered probes, counts)."""
    harness, fired = seed_harness(cfg.harness), []
    per_dim, world = s.worlds(effect)
    for r in range(rounds):
        stats, rs = simulate_round(rng, sizes, harness, per_dim, world)
        if s.rule != "alarm":
            rs = replace(rs, alarm=None)
        harness, decisions = evolve(harness, stats, rs, cfg.harness.rules, r)
        fired.append(any(d.rule == s.rule for d in decisions))
    return fired


def sizes_of(cfg, scale: int, valid_share: float) -> Sizes:
    ev = cfg.evaluate
    return Sizes(
        cfg.data.queries_per_round * scale,
        cfg.generate.samples_per_query,
        ev.probe_share,
        ev.depth_probe_share,
        cfg.harness.search_depth,
        list(ev.probe_kinds),
        dict(ev.probe_dimensions),
        valid_share,
        cfg.harness.rules.confidence,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--set", action="append", default=[], dest="overrides")
    p.add_argument("--sims", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=4, help="rounds per simulated campaign (power: fired within them)")
    p.add_argument("--scales", default="1,2,4,8", help="queries per round multiplied by each, beside the default")
    p.add_argument("--valid-share", type=float, default=0.1, help="fully valid reports (make run: 0-19%%)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    cfg = load_config(args.config, args.overrides)
    scales = [int(x) for x in args.scales.split(",")]
    print(
        f"config {args.config}: {cfg.data.queries_per_round} queries x {cfg.generate.samples_per_query} reports a "
        f"round, probe share {cfg.evaluate.probe_share}, depth-probe share {cfg.evaluate.depth_probe_share}, "
        f"{cfg.harness.search_depth} claims a report, fully valid share {args.valid_share}; {args.sims} campaigns "
        f"of {args.rounds} rounds per cell; confidence {cfg.harness.rules.confidence}\n"
    )
    head = "| rule | null (nothing changed) | false-fire / round | planted effect | " + " | ".join(
        f"power x{s} queries" for s in scales
    )
    print(head + " |\n|" + "---|" * (4 + len(scales)))
    for s in scenarios():
        rng = random.Random(args.seed)
        nulls = [
            f
            for _ in range(args.sims)
            for f in campaign(rng, sizes_of(cfg, 1, args.valid_share), cfg, s, False, args.rounds)
        ]
        powers = []
        for scale in scales:
            hits = sum(
                any(campaign(rng, sizes_of(cfg, scale, args.valid_share), cfg, s, True, args.rounds))
                for _ in range(args.sims)
            )
            powers.append(f"{hits / args.sims:.0%}")
        print(f"| {s.rule} | {s.null} | {sum(nulls) / len(nulls):.1%} | {s.effect} | " + " | ".join(powers) + " |")


if __name__ == "__main__":
    main()
