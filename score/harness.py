"""The meta-harness: a controller outside the model that reshapes the evaluation environment each round.

State (versioned in the artifacts, `RUN/round-r/harness/`): a dimension pool, each dimension seed or
proposed, candidate, active or retired, with the round of its last change and the probe counts gathered since;
and the controls the evaluator runs under (claims checked per report, search calls per claim, criteria per
dimension, strictness). Round r evaluates under the harness written by round r-1; round 0 under the seed harness.

`evolve()` is the default controller: deterministic rules over one round's statistics, each firing on an
interval, never on a point estimate (score.intervals; benchmarks/harness_power.py measures how often each fires by
chance and how often on a planted effect). Every control is a lever some rule moves:

    saturation   a dimension near the top with no spread, M rounds running -> harder first (an evidence dimension:
                 search_depth + 1; another: criteria_per_dimension + 1), retired when the lever is at its cap
    redundancy   two active dimensions whose within-query correlation is surely above the bar -> the one that
                 spreads less retires
    corruption   an active dimension surely ranking originals above corrupted copies too rarely -> retires
    probation    a candidate that spreads, and surely beats chance on its probes -> active; never -> retired
    alarm        the in-loop reward rose while the held-out benchmark fell beyond its spread (judge hacking) ->
                 strictness + 1 and the last retired dimension back on probation
    proposals    new dimensions, retirements and control changes from the evaluator and the LLM controller, capped
                 per source, each through a gate on the same statistic a rule reads; a new dimension only when its
                 name and description are known words related to the task (`words_gate`)
    search_hops  re-checking the same claims with more search moved their verdicts -> search_hops + 1
    strictness   fully valid reports crowd the top -> strictness + 1 (the evaluator's instructions)

Every decision is a row naming its rule, its statistic with interval, counts and threshold, and its reason.
`mode: static` returns the harness unchanged.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from statistics import NormalDist
from typing import Literal

from score.config import HarnessConfig, RulesConfig
from score.intervals import correlation_interval, wilson

Status = Literal["candidate", "active", "retired"]
LEVERS = ("search_depth", "search_hops", "criteria_per_dimension", "strictness")  # every control, each a lever


@dataclass(frozen=True)
class Dimension:
    id: str
    description: str
    origin: Literal["seed", "proposed"]
    status: Status
    uses_evidence: bool  # a saturated evidence dimension is hardened by checking more claims (search_depth)
    changed_round: int  # round whose harness-evolve last changed the status (-1: the seed)
    saturated_rounds: int = 0  # consecutive rounds the saturation rule saw it saturated
    probation_rounds: int = 0  # rounds scored in the shadow as a candidate
    probe_n: int = 0  # probed reports judged on it since its status last changed (the rules' evidence accumulates)
    probe_points: float = 0.0  # of which ranked the original above its corrupted copy (ties half)


@dataclass(frozen=True)
class Controls:
    search_depth: int  # claims checked per report
    search_hops: int  # search calls per claim
    criteria_per_dimension: int
    strictness: int  # the level of the evaluator's instructions (score.prompts.STRICTNESS)


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
    """One dimension's numbers in one round (scores 0-10, the reports' own, not their corrupted copies)."""

    id: str
    mean: float
    mean_low: float  # one-sided lower bound of the mean over reports
    reports: int  # distinct reports scored on it
    spread: float  # mean over queries of the std of the dimension's score across the query's K reports
    queries: int  # distinct queries with two or more reports scored on it
    detected: float  # probed reports whose original outscored its corrupted copy (ties half) ...
    probes: int  # ... of this many distinct probed reports whose corruption damages the dimension
    probed: bool  # some corruption damages it (evaluate.probe_dimensions); if not, a candidate is judged on spread
    partners: tuple[tuple[str, float, int], ...] = ()  # (other dimension, within-query correlation, pairs - queries)


@dataclass(frozen=True)
class Proposal:
    """A change proposed by the evaluator (new dimensions, in its rubrics) or the LLM controller (any kind)."""

    kind: Literal["dimension", "retire", "control"]
    target: str  # the new dimension's name, the dimension to retire, or the control to raise
    description: str  # the new dimension's description, or the proposer's reason
    source: str  # "evaluator" | "llm controller"


@dataclass(frozen=True)
class Alarm:
    """What the judge-hacking alarm reads: between the previous round and this one, the change of the in-loop
    solver reward and of the held-out benchmark score of the policies that wrote the two rounds."""

    in_loop_change: float
    heldout_change: float
    heldout_spread: float  # std of the held-out change (judge runs of both evaluations)
    rounds: tuple[int, int]


@dataclass(frozen=True)
class Vocabulary:
    """What a proposed dimension's words are checked against (`words_gate`): `words`, every word of the corpus, the
    queries and the seed harness (a name of known words is well formed); `task`, the content words of the queries
    and of the seed dimensions' descriptions (a proposal sharing none is not about this task)."""

    words: frozenset[str]
    task: frozenset[str]


def words_of(text: str) -> list[str]:
    """Lower-case words of letters.

    >>> words_of("Source-diversity: 3 sources!")
    ['source', 'diversity', 'sources']
    """
    return re.findall(r"[a-z]+", text.lower())


STOPWORDS = frozenset(
    "about above after again also among and another any are based been before being both but can could does doing "
    "each either every from further have having into itself many more most much must only other over same should "
    "some such than that their them then there these they this those through under until very were what when where "
    "which while whom whose will with would your".split()
)


def vocabulary(corpus_texts, queries, descriptions) -> Vocabulary:
    """The Vocabulary of a run from its corpus texts, query texts and the seed dimensions' descriptions."""
    task = {w for t in (*queries, *descriptions) for w in words_of(t) if len(w) >= 4 and w not in STOPWORDS}
    words = {w for t in (*corpus_texts, *queries, *descriptions) for w in words_of(t)}
    return Vocabulary(frozenset(words), frozenset(task))


@dataclass(frozen=True)
class RoundSignals:
    """What the rules read about the round beyond per-dimension numbers."""

    valid_reports: int = 0  # fully valid solver reports (validity 1) ...
    top_reports: int = 0  # ... of which scored at or above rules.crowded_reward
    depth_claims: int = 0  # claims re-checked with more search ...
    depth_change: float = 0.0  # ... the mean signed change of their support (P(yes) - P(no), calibrated)
    depth_low: float = 0.0  # its two-sided interval
    depth_high: float = 0.0
    proposals: tuple[Proposal, ...] = ()
    alarm: Alarm | None = None
    vocabulary: Vocabulary | None = None  # what a proposed dimension's words are checked against (None: unchecked)


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
    controls = Controls(cfg.search_depth, cfg.search_hops, cfg.criteria_per_dimension, cfg.strictness)
    return Harness(-1, dims, controls)


def evolve(
    harness: Harness,
    stats: dict[str, DimensionStats],
    round_stats: RoundSignals,
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
    pool = _Pool({d.id: _gathered(d, stats.get(d.id)) for d in harness.dimensions}, harness.controls, rules, round_idx)
    for rule in (_saturation, _redundancy, _corruption, _probation):
        rule(pool, stats)
    _alarm(pool, round_stats.alarm)
    _search_hops(pool, round_stats)
    _strictness(pool, round_stats)
    _proposals(pool, stats, round_stats)
    return Harness(round_idx, tuple(pool.dims.values()), pool.controls), pool.decisions


def _gathered(d: Dimension, s: DimensionStats | None) -> Dimension:
    """The dimension with this round's probes added to what it gathered since its status last changed."""
    if s is None or d.status == "retired":
        return d
    return replace(d, probe_n=d.probe_n + s.probes, probe_points=d.probe_points + s.detected)


@dataclass
class _Pool:
    """The dimension pool and controls while the rules run, and the decisions taken so far."""

    dims: dict[str, Dimension]
    controls: Controls
    rules: RulesConfig
    round_idx: int
    decisions: list[Decision] = field(default_factory=list)
    moved: set[str] = field(default_factory=set)  # controls a rule moved this round (each moves once)

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(self.rules.confidence)

    def n_active(self) -> int:
        return sum(d.status == "active" for d in self.dims.values())

    def with_status(self, status: Status, stats: dict[str, DimensionStats]) -> list[Dimension]:
        return [d for d in self.dims.values() if d.status == status and d.id in stats]

    def set_status(self, dim_id: str, status: Status, rule: str, numbers: dict, reason: str) -> None:
        """A status change; the dimension's evidence starts afresh (probes, rounds counted)."""
        d = self.dims[dim_id]
        self.dims[dim_id] = replace(
            d, status=status, changed_round=self.round_idx, probe_n=0, probe_points=0.0, probation_rounds=0
        )
        self.decisions.append(Decision(rule, dim_id, status, numbers, reason))

    def detection(self, d: Dimension) -> tuple[float, float, float]:
        """A dimension's detection gathered since its status last changed: rate (0 with no probes) and its Wilson
        interval."""
        low, high = wilson(d.probe_points, d.probe_n, self.z)
        return (d.probe_points / d.probe_n if d.probe_n else 0.0), low, high

    def raise_control(self, name: str, rule: str, numbers: dict, reason: str) -> bool:
        """Raise a control one step (once a round, never above its cap); False when it cannot move."""
        value, cap = getattr(self.controls, name), getattr(self.rules, f"max_{name}")
        if name in self.moved or value >= cap:
            return False
        self.controls = replace(self.controls, **{name: value + 1})
        self.moved.add(name)
        self.decisions.append(Decision(rule, name, f"raise to {value + 1}", numbers, reason))
        return True


def numbers(statistic: str, value: float, low: float, high: float, n: int, threshold: float, **extra) -> dict:
    """A decision's numbers: the statistic, its interval, the count it rests on and the threshold it crossed.

    Parameters: one per field of the record it builds, so every rule states all of them where it decides."""
    nums = {"statistic": statistic, "value": value, "low": low, "high": high, "n": n, "threshold": threshold}
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in {**nums, **extra}.items()}


def _saturation(pool: _Pool, stats: dict[str, DimensionStats]) -> None:
    """1. an active dimension surely near the top with no spread, M rounds running: harden it with its lever, or
    retire it when the lever is at its cap."""
    rules = pool.rules
    for d in pool.with_status("active", stats):
        s = stats[d.id]
        saturated = (
            s.reports >= rules.min_reports
            and s.queries >= rules.min_queries
            and s.mean_low >= rules.saturated_mean
            and s.spread <= rules.saturated_spread
        )
        count = d.saturated_rounds + 1 if saturated else 0
        pool.dims[d.id] = replace(pool.dims[d.id], saturated_rounds=count)
        if count < rules.saturated_rounds:
            continue
        nums = numbers(
            "mean",
            s.mean,
            s.mean_low,
            10.0,
            s.reports,
            rules.saturated_mean,
            spread=s.spread,
            spread_threshold=rules.saturated_spread,
            queries=s.queries,
            saturated_rounds=count,
            dimension=d.id,
        )
        why = (
            f"{d.id}: mean {s.mean:.2f} (lower bound {s.mean_low:.2f} >= {rules.saturated_mean}) and spread "
            f"{s.spread:.2f} <= {rules.saturated_spread} over {s.reports} reports, {count} rounds running"
        )
        lever = "search_depth" if d.uses_evidence else "criteria_per_dimension"
        harder = "check more claims per report" if d.uses_evidence else "more criteria per dimension"
        if pool.raise_control(lever, "saturation", nums, f"{why}: harder first, {harder}"):
            pool.dims[d.id] = replace(pool.dims[d.id], saturated_rounds=0)
        elif pool.n_active() > rules.min_active:
            pool.set_status(d.id, "retired", "saturation", nums, f"{why}; {lever} is at its cap")


def _redundancy(pool: _Pool, stats: dict[str, DimensionStats]) -> None:
    """2. of two active dimensions whose within-query correlation is surely above the bar, retire the one that
    spreads less; every pair of active dimensions is looked at, the most correlated first."""
    rules, z = pool.rules, pool.z
    pairs = sorted(
        ((r, n, a, b) for a in stats for b, r, n in stats[a].partners if a < b and b in stats),
        key=lambda p: (-p[0], p[2], p[3]),
    )
    for r, n, a, b in pairs:
        low, high = correlation_interval(r, n, z)
        active = pool.dims.get(a) and pool.dims.get(b) and pool.dims[a].status == pool.dims[b].status == "active"
        if not active or low < rules.redundant_corr or pool.n_active() <= rules.min_active:
            continue
        loser, keeper = (a, b) if stats[a].spread <= stats[b].spread else (b, a)
        pool.set_status(
            loser,
            "retired",
            "redundancy",
            numbers("within-query correlation", r, low, high, n, rules.redundant_corr, pair=[a, b]),
            f"within-query correlation with {keeper} {r:.2f} (lower bound {low:.2f} >= {rules.redundant_corr}, "
            f"{n} independent pairs); it spreads less",
        )


def _corruption(pool: _Pool, stats: dict[str, DimensionStats]) -> None:
    """3. retire an active dimension that surely ranks originals above their corrupted copies too rarely, on the
    probed reports gathered since it became active."""
    rules = pool.rules
    for d in pool.with_status("active", stats):
        d = pool.dims[d.id]
        rate, low, high = pool.detection(d)
        if d.status != "active" or d.probe_n < rules.min_probes or high >= rules.min_detection:
            continue
        if pool.n_active() <= rules.min_active:
            continue
        pool.set_status(
            d.id,
            "retired",
            "corruption",
            numbers("detection", rate, low, high, d.probe_n, rules.min_detection),
            f"ranks originals above corrupted copies in {rate:.0%} of {d.probe_n} probed reports (upper bound "
            f"{high:.2f} < {rules.min_detection})",
        )


def _probation(pool: _Pool, stats: dict[str, DimensionStats]) -> None:
    """4. admit a candidate that spreads and, if some corruption damages it, surely beats chance on its probes;
    retire one still not admitted after rules.max_probation_rounds."""
    rules = pool.rules
    for d in pool.with_status("candidate", stats):
        s, d = stats[d.id], pool.dims[d.id]
        rounds = d.probation_rounds + 1
        pool.dims[d.id] = replace(d, probation_rounds=rounds)
        rate, low, high = pool.detection(d)
        spreads = s.queries >= rules.min_queries and s.spread >= rules.admit_spread
        detects = not s.probed or (d.probe_n >= rules.min_probes and low > rules.admit_detection)
        nums = numbers(
            "detection",
            rate,
            low,
            high,
            d.probe_n,
            rules.admit_detection,
            spread=s.spread,
            spread_threshold=rules.admit_spread,
            queries=s.queries,
            probation_rounds=rounds,
        )
        if rounds >= rules.probation_rounds and spreads and detects:
            probes = (
                f"detection {rate:.0%} over {d.probe_n} probed reports (lower bound {low:.2f} > "
                f"{rules.admit_detection})"
                if s.probed
                else "no corruption damages it"
            )
            pool.set_status(
                d.id,
                "active",
                "admission",
                nums,
                f"spread {s.spread:.2f} >= {rules.admit_spread} over {s.queries} queries and {probes}, after "
                f"{rounds} probation round(s)",
            )
        elif rounds >= rules.max_probation_rounds:
            pool.set_status(d.id, "retired", "probation", nums, f"not admitted after {rounds} probation rounds")


def _alarm(pool: _Pool, alarm: Alarm | None) -> None:
    """5. judge hacking: the in-loop reward rose while the held-out benchmark score of the policies fell beyond its
    spread. Stricter instructions, and the dimension retired last back on probation."""
    if alarm is None:
        return
    bar = -pool.z * alarm.heldout_spread
    if not (alarm.in_loop_change > 0 and alarm.heldout_change < bar):
        return
    nums = numbers(
        "held-out change",
        alarm.heldout_change,
        alarm.heldout_change - abs(bar),
        alarm.heldout_change + abs(bar),
        2,
        bar,
        in_loop_change=alarm.in_loop_change,
        rounds=list(alarm.rounds),
    )
    why = (
        f"rounds {alarm.rounds[0]} -> {alarm.rounds[1]}: in-loop reward {alarm.in_loop_change:+.3f} while the "
        f"held-out benchmark score moved {alarm.heldout_change:+.3f} (below -{pool.z:.2f} x its spread "
        f"{alarm.heldout_spread:.3f})"
    )
    pool.decisions.append(Decision("alarm", "judge_hacking", "flag", nums, why))
    pool.raise_control("strictness", "alarm", nums, f"{why}: stricter instructions")
    retired = [d for d in pool.dims.values() if d.status == "retired" and d.changed_round < pool.round_idx]
    if retired:
        last = max(retired, key=lambda d: d.changed_round)
        pool.set_status(last.id, "candidate", "alarm", nums, f"{why}: back on probation, it was retired last")


def _search_hops(pool: _Pool, rs: RoundSignals) -> None:
    """6. more search per claim when re-checking the same claims with more search surely moved their verdicts."""
    rules = pool.rules
    moved = rs.depth_low > rules.depth_change or rs.depth_high < -rules.depth_change
    if rs.depth_claims >= rules.min_depth_claims and moved:
        pool.raise_control(
            "search_hops",
            "search_hops",
            numbers(
                "signed support change",
                rs.depth_change,
                rs.depth_low,
                rs.depth_high,
                rs.depth_claims,
                rules.depth_change,
            ),
            f"re-checked with more search, {rs.depth_claims} claims moved their support by {rs.depth_change:+.3f} "
            f"(interval [{rs.depth_low:+.3f}, {rs.depth_high:+.3f}] clear of +-{rules.depth_change})",
        )


def _strictness(pool: _Pool, rs: RoundSignals) -> None:
    """7. stricter instructions when fully valid reports surely crowd the top of the reward."""
    rules = pool.rules
    low, high = wilson(rs.top_reports, rs.valid_reports, pool.z)
    if rs.valid_reports >= rules.min_reports and low >= rules.crowded_share:
        share = rs.top_reports / rs.valid_reports
        pool.raise_control(
            "strictness",
            "strictness",
            numbers("top share", share, low, high, rs.valid_reports, rules.crowded_share),
            f"{share:.0%} of {rs.valid_reports} fully valid reports reward >= {rules.crowded_reward} (lower bound "
            f"{low:.2f} >= {rules.crowded_share})",
        )


def _proposals(pool: _Pool, stats: dict[str, DimensionStats], rs: RoundSignals) -> None:
    """8. proposals, in order, at most rules.max_proposals of each kind per source, each through its gate: a new
    dimension becomes a candidate; a retirement or a control change passes only where the statistic its rule reads
    points that way (the point estimate: the rule itself needs the interval)."""
    taken: dict[tuple[str, str], int] = {}
    for p in rs.proposals:
        key = (p.source, p.kind)
        if taken.get(key, 0) >= pool.rules.max_proposals:
            continue
        gate = {"dimension": _new_dimension, "retire": _retirement, "control": _control_change}[p.kind]
        if gate(pool, stats, rs, p):
            taken[key] = taken.get(key, 0) + 1


def _new_dimension(pool: _Pool, stats: dict[str, DimensionStats], rs: RoundSignals, p: Proposal) -> bool:
    dim_id = normalise_id(p.target)
    nums: dict = {"source": p.source, "description_chars": len(p.description)}
    if not dim_id or dim_id in pool.dims or len(p.description) < 10:
        why = (
            "no name" if not dim_id else "already in the pool" if dim_id in pool.dims else "description under 10 chars"
        )
        pool.decisions.append(
            Decision("proposal", dim_id or "-", "refused", nums, f"proposed by the {p.source}: {why}")
        )
        return False
    if rs.vocabulary is not None:
        passed, counts, why = words_gate(dim_id, p.description, rs.vocabulary, pool.rules)
        nums.update(counts)
        if not passed:
            pool.decisions.append(Decision("proposal", dim_id, "refused", nums, f"proposed by the {p.source}: {why}"))
            return False
    pool.dims[dim_id] = Dimension(dim_id, p.description[:300], "proposed", "candidate", False, pool.round_idx)
    pool.decisions.append(
        Decision("proposal", dim_id, "candidate", nums, f"proposed by the {p.source}: {p.description[:120]}")
    )
    return True


def words_gate(dim_id: str, description: str, vocab: Vocabulary, rules: RulesConfig) -> tuple[bool, dict, str]:
    """A proposed dimension is admitted as a candidate only if (1) every word of its name (1 to 4 words of 3+
    letters) is a known word, (2) at least rules.known_word_share of its description's words (4 or more) are, and
    (3) a word of its name or description (4+ letters, not a stopword) is one of the task's (the queries', the seed
    dimensions'). Returns whether it passed, the counts it rested on and the reason.

    >>> v = vocabulary(["The history of the Celsius scale"], ["What connects Kelvin and Celsius?"], ["cites sources"])
    >>> words_gate("celsius_history", "tells the history of the Celsius scale", v, RulesConfig())[0]
    True
    >>> words_gate("tchaumon_test", "Test of Tuque in Costa Brava", v, RulesConfig())[2]
    "name word(s) not known: ['tchaumon', 'test']"
    """
    name = dim_id.split("_")
    desc = words_of(description)
    unknown_name = [w for w in name if len(w) < 3 or w not in vocab.words]
    known = sum(w in vocab.words for w in desc)
    related = sorted({w for w in name + desc if w in vocab.task})
    nums = {
        "name_words": len(name),
        "name_unknown": len(unknown_name),
        "description_words": len(desc),
        "description_known": known,
        "known_share_threshold": rules.known_word_share,
        "task_words": len(related),
    }
    if not 1 <= len(name) <= 4 or unknown_name:
        return False, nums, f"name word(s) not known: {unknown_name}" if unknown_name else "name of over 4 words"
    if len(desc) < 4 or known < rules.known_word_share * len(desc):
        return False, nums, f"description: {known} of {len(desc)} words known (needs 4+ words, share >= "
        f"{rules.known_word_share})"
    if not related:
        return False, nums, "no word of its name or description is one of the task's (queries, seed dimensions)"
    return True, {**nums, "related": related[:5]}, ""


def _retirement(pool: _Pool, stats: dict[str, DimensionStats], rs: RoundSignals, p: Proposal) -> bool:
    rules, d, s = pool.rules, pool.dims.get(normalise_id(p.target)), stats.get(normalise_id(p.target))
    if d is None or s is None or d.status != "active" or pool.n_active() <= rules.min_active:
        return False
    signs = {
        "saturated": _near_top(s, rules),
        "undetecting": d.probe_n >= rules.min_probes and pool.detection(d)[0] < rules.min_detection,
        "redundant": any(
            r >= rules.redundant_corr and pool.dims.get(o, d).status == "active" for o, r, _ in s.partners
        ),
    }
    why = [k for k, v in signs.items() if v]
    if not why:
        return False
    nums = {"source": p.source, "signs": why, "mean": round(s.mean, 4), "spread": round(s.spread, 4)}
    pool.set_status(
        d.id,
        "retired",
        "proposal",
        nums,
        f"the {p.source} proposed it ({p.description[:100]}); its statistics agree: {', '.join(why)}",
    )
    return True


def _control_change(pool: _Pool, stats: dict[str, DimensionStats], rs: RoundSignals, p: Proposal) -> bool:
    rules = pool.rules
    signs = {
        "strictness": rs.valid_reports > 0 and rs.top_reports / rs.valid_reports >= rules.crowded_share,
        "search_hops": rs.depth_claims > 0 and abs(rs.depth_change) > rules.depth_change,
        "search_depth": any(_near_top(s, rules) for s in stats.values() if _evidence(pool, s.id)),
        "criteria_per_dimension": any(_near_top(s, rules) for s in stats.values() if not _evidence(pool, s.id)),
    }
    if not signs.get(p.target):
        return False
    why = f"the {p.source} proposed it ({p.description[:100]}); the statistic its rule reads points that way"
    return pool.raise_control(p.target, "proposal", {"source": p.source}, why)


def _near_top(s: DimensionStats, rules: RulesConfig) -> bool:
    return s.mean >= rules.saturated_mean and s.spread <= rules.saturated_spread


def _evidence(pool: _Pool, dim_id: str) -> bool:
    return dim_id in pool.dims and pool.dims[dim_id].uses_evidence


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
