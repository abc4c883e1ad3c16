"""The meta-harness: a controller outside the model that reshapes the evaluation environment each round.

State (versioned in the artifacts, `RUN/round-r/harness/`): a dimension pool, each dimension seed or
proposed, candidate, active or retired, with the round of its last change; and the controls the
evaluator runs under (search depth and hops, rubrics per query, criteria per dimension, strictness).
Round r evaluates under the harness written by round r-1; round 0 under the seed harness of the config.

`evolve()` is the default controller: deterministic rules over one round's statistics. Every decision is
a row naming its rule, its numbers and its reason. `mode: static` returns the harness unchanged.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Literal

from score.config import HarnessConfig, RulesConfig

Status = Literal["candidate", "active", "retired"]


@dataclass(frozen=True)
class Dimension:
    id: str
    description: str
    origin: Literal["seed", "proposed"]
    status: Status
    uses_evidence: bool
    changed_round: int  # round whose harness-evolve last changed the status (-1: the seed)
    saturated_rounds: int = 0  # consecutive rounds the saturation rule saw it saturated
    probation_rounds: int = 0  # rounds scored in the shadow as a candidate


@dataclass(frozen=True)
class Controls:
    search_depth: int
    search_hops: int
    rubrics_per_query: int
    criteria_per_dimension: int
    strictness: int


@dataclass(frozen=True)
class Harness:
    version: int  # the round that wrote it; -1 for the seed
    dimensions: tuple[Dimension, ...]
    controls: Controls

    @property
    def active(self) -> list[Dimension]:
        return [d for d in self.dimensions if d.status == "active"]

    @property
    def candidates(self) -> list[Dimension]:
        return [d for d in self.dimensions if d.status == "candidate"]


@dataclass(frozen=True)
class DimensionStats:
    """One dimension's numbers in one round (scores 0-10, originals only unless said otherwise)."""

    id: str
    mean: float
    spread: float  # mean over queries of the std of the dimension's score across the query's K reports
    detection: float  # share of probe pairs where the original outscored its corrupted copy
    probes: int
    max_corr: float  # highest correlation with another scored dimension
    max_corr_with: str


@dataclass(frozen=True)
class RoundStats:
    """What the rules read about the round beyond per-dimension numbers."""

    top_share: float  # share of valid solver rewards at or above rules.crowded_reward
    depth_change: float  # mean |supported share at depth+1 - at depth| over depth-probed reports
    proposals: tuple[tuple[str, str, str], ...] = ()  # (name, description, who proposed it), in order


@dataclass(frozen=True)
class Decision:
    rule: str
    target: str
    action: str
    numbers: dict
    reason: str


def seed_harness(cfg: HarnessConfig) -> Harness:
    dims = tuple(
        Dimension(d.id, d.description, "seed", "active" if d.active else "candidate", d.uses_evidence, -1)
        for d in cfg.dimensions
    )
    controls = Controls(cfg.search_depth, cfg.search_hops, cfg.rubrics_per_query, cfg.criteria_per_dimension, cfg.strictness)
    return Harness(-1, dims, controls)


def evolve(
    harness: Harness, stats: dict[str, DimensionStats], round_stats: RoundStats, rules: RulesConfig, round_idx: int,
    mode: Literal["rules", "static"] = "rules",
) -> tuple[Harness, list[Decision]]:
    """The next harness and the decisions that made it. Pure: same inputs, same outputs."""
    if mode == "static":
        return replace(harness, version=round_idx), [Decision("static", "*", "keep", {}, "harness.mode is static: the seed harness is frozen")]
    dims = {d.id: d for d in harness.dimensions}
    decisions: list[Decision] = []

    def n_active() -> int:
        return sum(d.status == "active" for d in dims.values())

    def set_status(dim_id: str, status: Status, rule: str, numbers: dict, reason: str) -> None:
        dims[dim_id] = replace(dims[dim_id], status=status, changed_round=round_idx)
        decisions.append(Decision(rule, dim_id, status, numbers, reason))

    # 1. saturation: near the top with near-zero spread for M rounds in a row
    for d in [d for d in dims.values() if d.status == "active" and d.id in stats]:
        s = stats[d.id]
        saturated = s.mean >= rules.saturated_mean and s.spread <= rules.saturated_spread
        count = d.saturated_rounds + 1 if saturated else 0
        dims[d.id] = replace(dims[d.id], saturated_rounds=count)
        numbers = {"mean": s.mean, "spread": s.spread, "saturated_rounds": count}
        if count >= rules.saturated_rounds and n_active() > rules.min_active:
            set_status(d.id, "retired", "saturation", numbers, f"mean {s.mean:.2f} >= {rules.saturated_mean} and spread {s.spread:.2f} <= {rules.saturated_spread} for {count} rounds")
    # 2. redundancy: of two highly correlated active dimensions, retire the one that spreads less
    for d in sorted((d for d in dims.values() if d.status == "active" and d.id in stats), key=lambda d: d.id):
        s = stats[d.id]
        other = dims.get(s.max_corr_with)
        if dims[d.id].status != "active" or other is None or other.status != "active" or s.max_corr < rules.redundant_corr or n_active() <= rules.min_active:
            continue
        loser = d.id if s.spread <= stats[other.id].spread else other.id
        set_status(loser, "retired", "redundancy", {"corr": s.max_corr, "pair": [d.id, other.id]}, f"correlation {s.max_corr:.2f} >= {rules.redundant_corr} with {other.id if loser == d.id else d.id}; it spreads less")
    # 3. validity: an active dimension that does not rank originals above their corruptions
    for d in [d for d in dims.values() if d.status == "active" and d.id in stats]:
        s = stats[d.id]
        if dims[d.id].status == "active" and s.probes >= rules.min_probes and s.detection < rules.min_detection and n_active() > rules.min_active:
            set_status(d.id, "retired", "corruption", {"detection": s.detection, "probes": s.probes}, f"ranks originals above corrupted copies in {s.detection:.0%} of {s.probes} probes < {rules.min_detection:.0%}")
    # 4. probation: admit a candidate that discriminates and passes the probes; retire one that never does
    for d in [d for d in dims.values() if d.status == "candidate" and d.id in stats]:
        s = stats[d.id]
        rounds = d.probation_rounds + 1
        dims[d.id] = replace(dims[d.id], probation_rounds=rounds)
        numbers = {"spread": s.spread, "detection": s.detection, "probes": s.probes, "probation_rounds": rounds}
        if rounds >= rules.probation_rounds and s.spread >= rules.admit_spread and s.detection >= rules.admit_detection and s.probes >= rules.min_probes:
            set_status(d.id, "active", "admission", numbers, f"spread {s.spread:.2f} >= {rules.admit_spread} and detection {s.detection:.0%} >= {rules.admit_detection:.0%} after {rounds} probation round(s)")
        elif rounds >= rules.max_probation_rounds:
            set_status(d.id, "retired", "probation", numbers, f"not admitted after {rounds} probation rounds")
    # 5. new candidates from the evaluator's proposals
    added = 0
    for name, description, source in round_stats.proposals:
        dim_id = normalise_id(name)
        if added >= rules.max_new_candidates or not dim_id or dim_id in dims or len(description) < 10:
            continue
        dims[dim_id] = Dimension(dim_id, description[:300], "proposed", "candidate", False, round_idx)
        decisions.append(Decision("proposal", dim_id, "candidate", {"source": source}, f"proposed by the {source}: {description[:120]}"))
        added += 1
    # 6. controls
    controls = harness.controls
    if round_stats.depth_change > rules.depth_change and controls.search_depth < rules.max_search_depth:
        controls = replace(controls, search_depth=controls.search_depth + 1)
        decisions.append(Decision("search_depth", "search_depth", f"raise to {controls.search_depth}", {"depth_change": round_stats.depth_change}, f"checking one claim deeper moved the supported share by {round_stats.depth_change:.2f} > {rules.depth_change}"))
    if round_stats.top_share >= rules.crowded_share and controls.strictness < rules.max_strictness:
        controls = replace(controls, strictness=controls.strictness + 1)
        decisions.append(Decision("strictness", "strictness", f"raise to {controls.strictness}", {"top_share": round_stats.top_share}, f"{round_stats.top_share:.0%} of valid solver rewards are >= {rules.crowded_reward}"))
    return Harness(round_idx, tuple(dims.values()), controls), decisions


def normalise_id(name: str) -> str:
    """A dimension id from a free-form name.

    >>> normalise_id("  Source Diversity! ")
    'source_diversity'
    """
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40]


def to_rows(harness: Harness) -> tuple[list[dict], dict]:
    """The harness as dimension rows and one controls row (see HARNESS_SCHEMA, CONTROLS_SCHEMA)."""
    return [{"version": harness.version, **asdict(d)} for d in harness.dimensions], {"version": harness.version, **asdict(harness.controls)}


def from_rows(dim_rows: list[dict], controls_row: dict) -> Harness:
    dims = tuple(Dimension(**{k: v for k, v in r.items() if k != "version"}) for r in dim_rows)
    controls = Controls(**{k: v for k, v in controls_row.items() if k != "version"})
    return Harness(int(controls_row["version"]), dims, controls)
