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
from typing import TYPE_CHECKING, Literal

from score.config import HarnessConfig, RulesConfig

if TYPE_CHECKING:
    from score.workspace import Workspace

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
    controls = Controls(
        cfg.search_depth, cfg.search_hops, cfg.rubrics_per_query, cfg.criteria_per_dimension, cfg.strictness
    )
    return Harness(-1, dims, controls)


def evolve(
    harness: Harness,
    stats: dict[str, DimensionStats],
    round_stats: RoundStats,
    rules: RulesConfig,
    round_idx: int,
    mode: Literal["rules", "static"] = "rules",
) -> tuple[Harness, list[Decision]]:
    """The next harness and the decisions that made it. Pure: same inputs, same outputs. The rules run in
    this order, each seeing what the ones before decided."""
    if mode == "static":
        return replace(harness, version=round_idx), [
            Decision("static", "*", "keep", {}, "harness.mode is static: the seed harness is frozen")
        ]
    pool = _Pool({d.id: d for d in harness.dimensions}, [], rules, round_idx)
    for rule in (_saturation, _redundancy, _corruption, _probation):
        rule(pool, stats)
    _proposals(pool, round_stats.proposals)
    controls = _controls(pool, harness.controls, round_stats)
    return Harness(round_idx, tuple(pool.dims.values()), controls), pool.decisions


@dataclass
class _Pool:
    """The dimension pool while the rules run, and the decisions taken so far."""

    dims: dict[str, Dimension]
    decisions: list[Decision]
    rules: RulesConfig
    round_idx: int

    def n_active(self) -> int:
        return sum(d.status == "active" for d in self.dims.values())

    def with_status(self, status: Status, stats: dict[str, DimensionStats]) -> list[Dimension]:
        return [d for d in self.dims.values() if d.status == status and d.id in stats]

    def set_status(self, dim_id: str, status: Status, rule: str, numbers: dict, reason: str) -> None:
        self.dims[dim_id] = replace(self.dims[dim_id], status=status, changed_round=self.round_idx)
        self.decisions.append(Decision(rule, dim_id, status, numbers, reason))


def _saturation(pool: _Pool, stats: dict[str, DimensionStats]) -> None:
    """1. retire an active dimension near the top with near-zero spread for M rounds in a row."""
    rules = pool.rules
    for d in pool.with_status("active", stats):
        s = stats[d.id]
        saturated = s.mean >= rules.saturated_mean and s.spread <= rules.saturated_spread
        count = d.saturated_rounds + 1 if saturated else 0
        pool.dims[d.id] = replace(pool.dims[d.id], saturated_rounds=count)
        numbers = {"mean": s.mean, "spread": s.spread, "saturated_rounds": count}
        if count >= rules.saturated_rounds and pool.n_active() > rules.min_active:
            pool.set_status(
                d.id,
                "retired",
                "saturation",
                numbers,
                f"mean {s.mean:.2f} >= {rules.saturated_mean} and spread {s.spread:.2f} <= "
                f"{rules.saturated_spread} for {count} rounds",
            )


def _redundancy(pool: _Pool, stats: dict[str, DimensionStats]) -> None:
    """2. of two highly correlated active dimensions, retire the one that spreads less."""
    rules, dims = pool.rules, pool.dims
    for d in sorted(pool.with_status("active", stats), key=lambda d: d.id):
        s = stats[d.id]
        other = dims.get(s.max_corr_with)
        if (
            dims[d.id].status != "active"
            or other is None
            or other.status != "active"
            or s.max_corr < rules.redundant_corr
            or pool.n_active() <= rules.min_active
        ):
            continue
        loser = d.id if s.spread <= stats[other.id].spread else other.id
        pool.set_status(
            loser,
            "retired",
            "redundancy",
            {"corr": s.max_corr, "pair": [d.id, other.id]},
            f"correlation {s.max_corr:.2f} >= {rules.redundant_corr} with "
            f"{other.id if loser == d.id else d.id}; it spreads less",
        )


def _corruption(pool: _Pool, stats: dict[str, DimensionStats]) -> None:
    """3. retire an active dimension that does not rank originals above their corruptions."""
    rules = pool.rules
    for d in pool.with_status("active", stats):
        s = stats[d.id]
        if (
            pool.dims[d.id].status == "active"
            and s.probes >= rules.min_probes
            and s.detection < rules.min_detection
            and pool.n_active() > rules.min_active
        ):
            pool.set_status(
                d.id,
                "retired",
                "corruption",
                {"detection": s.detection, "probes": s.probes},
                f"ranks originals above corrupted copies in {s.detection:.0%} of {s.probes} probes < "
                f"{rules.min_detection:.0%}",
            )


def _probation(pool: _Pool, stats: dict[str, DimensionStats]) -> None:
    """4. admit a candidate that discriminates and passes the probes; retire one that never does."""
    rules = pool.rules
    for d in pool.with_status("candidate", stats):
        s = stats[d.id]
        rounds = d.probation_rounds + 1
        pool.dims[d.id] = replace(pool.dims[d.id], probation_rounds=rounds)
        numbers = {"spread": s.spread, "detection": s.detection, "probes": s.probes, "probation_rounds": rounds}
        probed = s.probes > 0  # no corruption damages it (evaluate.probe_dimensions): judged on spread alone
        passes = not probed or (s.detection >= rules.admit_detection and s.probes >= rules.min_probes)
        if rounds >= rules.probation_rounds and s.spread >= rules.admit_spread and passes:
            probes = (
                f"detection {s.detection:.0%} >= {rules.admit_detection:.0%} over {s.probes} probed reports"
                if probed
                else "no corruption probes it"
            )
            pool.set_status(
                d.id,
                "active",
                "admission",
                numbers,
                f"spread {s.spread:.2f} >= {rules.admit_spread} and {probes} after {rounds} probation round(s)",
            )
        elif rounds >= rules.max_probation_rounds:
            pool.set_status(d.id, "retired", "probation", numbers, f"not admitted after {rounds} probation rounds")


def _proposals(pool: _Pool, proposals: tuple[tuple[str, str, str], ...]) -> None:
    """5. new candidates from the proposals, in order, at most rules.max_new_candidates."""
    added = 0
    for name, description, source in proposals:
        dim_id = normalise_id(name)
        if added >= pool.rules.max_new_candidates or not dim_id or dim_id in pool.dims or len(description) < 10:
            continue
        pool.dims[dim_id] = Dimension(dim_id, description[:300], "proposed", "candidate", False, pool.round_idx)
        pool.decisions.append(
            Decision(
                "proposal", dim_id, "candidate", {"source": source}, f"proposed by the {source}: {description[:120]}"
            )
        )
        added += 1


def _controls(pool: _Pool, controls: Controls, round_stats: RoundStats) -> Controls:
    """6. search deeper when deeper checks move the supported share; stricter when rewards crowd the top."""
    rules = pool.rules
    if round_stats.depth_change > rules.depth_change and controls.search_depth < rules.max_search_depth:
        controls = replace(controls, search_depth=controls.search_depth + 1)
        pool.decisions.append(
            Decision(
                "search_depth",
                "search_depth",
                f"raise to {controls.search_depth}",
                {"depth_change": round_stats.depth_change},
                f"checking one claim deeper moved the supported share by {round_stats.depth_change:.2f} > "
                f"{rules.depth_change}",
            )
        )
    if round_stats.top_share >= rules.crowded_share and controls.strictness < rules.max_strictness:
        controls = replace(controls, strictness=controls.strictness + 1)
        pool.decisions.append(
            Decision(
                "strictness",
                "strictness",
                f"raise to {controls.strictness}",
                {"top_share": round_stats.top_share},
                f"{round_stats.top_share:.0%} of valid solver rewards are >= {rules.crowded_reward}",
            )
        )
    return controls


def normalise_id(name: str) -> str:
    """A dimension id from a free-form name.

    >>> normalise_id("  Source Diversity! ")
    'source_diversity'
    """
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40]


def to_rows(harness: Harness) -> tuple[list[dict], dict]:
    """The harness as dimension rows and one controls row (see HARNESS_SCHEMA, CONTROLS_SCHEMA)."""
    return [{"version": harness.version, **asdict(d)} for d in harness.dimensions], {
        "version": harness.version,
        **asdict(harness.controls),
    }


def from_rows(dim_rows: list[dict], controls_row: dict) -> Harness:
    dims = tuple(Dimension(**{k: v for k, v in r.items() if k != "version"}) for r in dim_rows)
    controls = Controls(**{k: v for k, v in controls_row.items() if k != "version"})
    return Harness(int(controls_row["version"]), dims, controls)


def harness_for_round(ws: Workspace, round_idx: int) -> tuple[Harness, str]:
    """The harness round `round_idx` evaluates under, and its fingerprint: the seed harness of the config in
    round 0, else the one round r-1's harness-evolve wrote (which must be finished)."""
    from score.artifacts import CONTROLS, HARNESS
    from score.layout import stage_dir
    from score.pipeline import EVOLVE

    if round_idx == 0:
        return seed_harness(ws.cfg.harness), "seed:" + ws.cfg.section_fingerprint("harness")
    folder = stage_dir(ws.cfg.run, round_idx - 1, EVOLVE.folder)
    manifest = ws.store.finished(folder, f"run round {round_idx - 1}'s stages first")
    dims = ws.store.read_table(folder, HARNESS.file).to_pylist()
    controls = ws.store.read_table(folder, CONTROLS.file).to_pylist()[0]
    return from_rows(dims, controls), manifest.content_fingerprint()
