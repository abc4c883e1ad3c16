"""The evaluator, phase 5: rewards and the round's statistics. The evaluator's reward per judgement
(`reward_judgements`: two-sided pair credit for a report's and its corrupted copy's judgements on the dimensions the
corruption damages, gated consistency for the others), then, in one streaming pass over the score rows: rewards
per report (solver) and per rubric (evaluator: what its weights do), per-dimension statistics (what the
meta-harness reads) and the round's summary. The score-to-reward arithmetic has its one home here
(`cell_means`, `item_values`, `reward_judgements`); `score judge` uses it too.

Queries are taken one at a time and each is reduced and dropped before the next is read, so memory grows with
reports, not with score rows: self-evaluate feeds it the rows it just judged (`groups_from_rows`), and the same
pass reads a finished scores.parquet in batches (`stream_scores`, through `Store.iter_batches`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import groupby
from statistics import NormalDist
from typing import TYPE_CHECKING

import pyarrow as pa

from score.harness import Harness
from score.intervals import mean_interval, wilson
from score.rewards import (
    anchor_credit,
    consistency,
    consistency_gated,
    correlation,
    detection_points,
    detection_share,
    group_std,
    pair_credit,
    rubric_reward,
    rubric_score,
    solver_rewards,
    validity,
)
from score.rubrics import Rubric
from score.store.schemas import SCORES, ArtifactError
from score.store.store import STREAM_BATCH_ROWS, Store

if TYPE_CHECKING:
    from score.evaluator.base import Judged

STATS_COLUMNS = ["query_id", "rubric_idx", "pass_idx", "trajectory_id", "probe_kind", "dimension", "score"]


@dataclass
class ScoreGroup:
    """One query's score rows, column by column: the columns of scores.parquet the statistics read."""

    query_id: str
    rubric_idx: list[int]
    pass_idx: list[int]
    trajectory_id: list[str]
    probe_kind: list[str]
    dimension: list[str]
    score: list[float]


def groups_from_rows(rows: Iterable[dict]) -> Iterator[ScoreGroup]:
    """Score rows (dicts shaped like scores.parquet, e.g. `judge`'s) as per-query groups, in their order."""
    for q, run in groupby(rows, key=lambda s: s["query_id"]):
        run = list(run)
        yield ScoreGroup(q, *([s[c] for s in run] for c in STATS_COLUMNS[1:]))


def groups_from_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[ScoreGroup]:
    """Record batches holding STATS_COLUMNS as per-query groups; a query may straddle batches."""
    pending: ScoreGroup | None = None
    for batch in batches:
        cols = [batch.column(c).to_pylist() for c in STATS_COLUMNS]
        start = 0
        for q, run in groupby(cols[0]):
            end = start + sum(1 for _ in run)
            part = ScoreGroup(q, *(c[start:end] for c in cols[1:]))
            start = end
            if pending is not None and pending.query_id == q:  # the rest of the query the last batch ended in
                for c in STATS_COLUMNS[1:]:
                    getattr(pending, c).extend(getattr(part, c))
                continue
            if pending is not None:
                yield pending
            pending = part
    if pending is not None:
        yield pending


def stream_scores(store: Store, folder: str, batch_rows: int = STREAM_BATCH_ROWS) -> Iterator[ScoreGroup]:
    """A finished stage's scores.parquet as per-query groups, read in batches of the columns the statistics need."""
    return groups_from_batches(store.iter_batches(folder, SCORES.file, columns=STATS_COLUMNS, batch_rows=batch_rows))


@dataclass
class RoundTables:
    """What self-evaluate computes from its scores: rewards per report and per rubric, dimension statistics, summary."""

    solver_rows: list[dict]
    evaluator_rows: list[dict]
    dimension_rows: list[dict]
    summary: dict


@dataclass
class _Pairs:
    """(original, corrupted) score pairs, counted: what `detection_rate` reads, without keeping the pairs."""

    n: int = 0
    points: float = 0.0

    def add(self, pairs: list[tuple[float, float]]) -> None:
        self.n += len(pairs)
        self.points += detection_points(pairs)

    @property
    def rate(self) -> float:
        return detection_share(self.points, self.n)


@dataclass
class _PerDimension:
    """Per dimension, kept across queries: each report's mean score, and the (original, copy) pairs of the probed
    reports whose corruption damages it, counted."""

    per_report: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))  # dim -> trajectory
    probe_pairs: dict[str, _Pairs] = field(default_factory=lambda: defaultdict(_Pairs))
    dims: set[str] = field(default_factory=set)


@dataclass
class _Tallies:
    """What round_statistics keeps across queries: per-report numbers and counts, never score rows."""

    round_idx: int
    precision: dict[str, float]  # trajectory -> its citation precision (citations.parquet)
    solver_rows: list[dict] = field(default_factory=list)
    evaluator_rows: list[dict] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)
    means: list[float] = field(default_factory=list)  # per query, beside stds
    columns: list[tuple[float, float]] = field(default_factory=list)  # per judgement column: (consistency, std)
    detected: _Pairs = field(default_factory=_Pairs)  # distinct probed reports: original vs copy, mapped dimensions
    judgements: list[int] = field(default_factory=lambda: [0, 0, 0])  # [judgements, unparsable, items cut]
    dimensions: _PerDimension = field(default_factory=_PerDimension)
    identical_rubrics: int = 0  # queries whose J rubrics are all the same: their rubric group is flat


def round_statistics(
    cfg, round_idx: int, judged: Judged, groups: Iterable[ScoreGroup], harness: Harness
) -> RoundTables:
    """Rewards and statistics in one pass over per-query score groups (`groups_from_rows`, `stream_scores`).

    Queries are taken in `judged.by_query` order, and each group is reduced and dropped before the next is read:
    across queries only per-report numbers are kept (rewards, per-dimension means for the correlations) and
    tallies, so memory grows with reports, not with score rows. A query's rows must come together, queries in
    `by_query` order (the order `evaluate_reports` writes them); a query with no rows scores 0, as a rubric
    dimension with none does. What is read of `judged`: its reports by query, rubrics, evidence rows, judgement
    rows (rewarded: `reward_judgements`; the evaluator's rewards per rubric and the summary's consistency, spread
    and detection come from them) and citation rows (each report's citation precision, which scales its validity
    under `reward.citation_gate: precision`); its score rows are not read (`groups` are).
    `cfg` is the run config (or a stage's view of it): evaluate, reward, and harness.rules.crowded_reward, are read.
    """
    groups = iter(groups)
    ahead = next(groups, None)
    t = _Tallies(round_idx, citation_precision(judged.citation_rows))
    judgements = judged.judgements_by_query()
    for q, group in judged.by_query.items():
        cells = {}
        if ahead is not None and ahead.query_id == q:
            cells, ahead = cell_means(ahead), next(groups, None)
        _solver_rewards(cfg, q, group, judged.rubrics[q], cells, t)
        _evaluator_rewards(cfg, q, judged.rubrics[q], judgements.get(q, []), cells, t)
        _dimension_cells(q, cells, cfg.evaluate.probe_dimensions, t.dimensions)
    if ahead is not None:
        raise ArtifactError(
            f"score rows of query {ahead.query_id!r} come out of order or belong to no report: rows must come grouped "
            f"by query, queries in the reports' order (as self-evaluate writes scores.parquet)"
        )
    dim_rows = _dimension_stats(
        round_idx, judged.by_query, t.dimensions, harness, cfg.evaluate.probe_dimensions, cfg.harness.rules.confidence
    )
    summary = _summary(cfg, t, judged.rubrics, judged.evidence_rows, harness) | {
        "citation_precision": sum(t.precision.values()) / len(t.precision) if t.precision else 0.0,
        "citation_claims": len(judged.citation_rows),
    }
    return RoundTables(t.solver_rows, t.evaluator_rows, dim_rows, summary)


def _solver_rewards(cfg, q: str, group: list[dict], rubs: list[Rubric], cells: dict[tuple, float], t: _Tallies) -> None:
    """One query's solver rewards (per report), into the tallies."""
    rw = cfg.reward
    values = [item_values(rubs, cells, r["trajectory_id"], passes=cfg.evaluate.passes) for r in group]
    valid = [
        validity(
            r["report"],
            r["finish_reason"],
            len(r["cited"]),
            min_chars=rw.min_report_chars,
            empty=rw.empty_validity,
            truncated=rw.truncated_validity,
            uncited=rw.uncited_validity,
            precision=t.precision.get(r["trajectory_id"]) if rw.citation_gate == "precision" else None,
        )
        for r in group
    ]
    rewards = solver_rewards(valid, values)
    mean, std = sum(rewards) / len(rewards), group_std(rewards)
    t.stds.append(std)
    t.means.append(mean)
    for r, v, val, rew in zip(group, valid, values, rewards):
        t.solver_rows.append(
            {
                "round": t.round_idx,
                "query_id": q,
                "trajectory_id": r["trajectory_id"],
                "validity": v,
                "citation_precision": t.precision.get(r["trajectory_id"]),
                "score": sum(val) / len(val),
                "reward": rew,
                "group_mean": mean,
                "group_std": std,
            }
        )


def _evaluator_rewards(
    cfg, q: str, rubs: list[Rubric], rows: list[dict], cells: dict[tuple, float], t: _Tallies
) -> None:
    """One query's evaluator rewards per rubric, into the tallies: a rubric earns by what its weights do, the
    mean sign of (original - copy) of its weighted score over the query's probed reports (one copy each) and
    passes (`score.rewards.rubric_reward`); with no probed report, its judgements' mean consistency reward."""
    rw = cfg.reward
    _tally_judgements(rows, cfg.evaluate.passes, rw.discrimination_tau, t)
    copies = sorted({(tid, kind) for (_, _, tid, kind, _) in cells if kind})
    for j, rub in enumerate(rubs):
        mine = [
            r for r in rows if r["dimension"] in rub.weights and r["criterion"] in rub.criteria.get(r["dimension"], [])
        ]
        # an unparsable judgement counts 0 here (its own penalty is its own): a parsed rubric earns >= -1
        agree = [max(r["reward"], 0.0) for r in mine if r["reward_kind"] == "consistency"]
        credits = [r["reward"] for r in mine if r["reward_kind"] == "pair" and r["probe_kind"]]
        pairs = [
            (_rubric_value(rub, cells, j, p, tid, ""), _rubric_value(rub, cells, j, p, tid, kind))
            for tid, kind in copies
            for p in range(cfg.evaluate.passes)
        ]
        t.evaluator_rows.append(
            {
                "round": t.round_idx,
                "query_id": q,
                "rubric_idx": j,
                "status": rub.status,
                "agreement": sum(agree) / len(agree) if agree else 0.0,
                "detection": detection_share(detection_points(pairs), len(pairs)),
                "probe_pairs": len(credits),
                "reward": rubric_reward(rub.status, pairs, agree, rw.failed_rubric),
            }
        )
    t.identical_rubrics += len(rubs) > 1 and all(_same_rubric(r, rubs[0]) for r in rubs[1:])


def _same_rubric(a: Rubric, b: Rubric) -> bool:
    return a.weights == b.weights and a.criteria == b.criteria


def _tally_judgements(rows: list[dict], passes: int, tau: float, t: _Tallies) -> None:
    """One query's judgement columns (agreement between passes before the null and the gate, spread), probed
    reports (one comparison each: the copy's mean written score on its damaged dimensions against its original's
    on the same judgements) and counts."""
    for key, reward in column_consistency(rows, passes, tau).items():
        scores = [r["written"] for r in rows if _column(r) == key and r["written"] is not None and not r["probe_kind"]]
        t.columns.append((reward, group_std(scores)))
    originals = _written_by_report(rows)
    copies: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)  # (trajectory, kind) -> pairs
    for r in rows:
        if r["reward_kind"] == "pair" and r["probe_kind"] and r["written"] is not None:
            original = originals[(r["trajectory_id"],) + _column(r)]
            copies[(r["trajectory_id"], r["probe_kind"])].append((original, r["written"]))
    for pairs in copies.values():
        t.detected.add([(sum(o for o, _ in pairs) / len(pairs), sum(c for _, c in pairs) / len(pairs))])
    t.judgements[0] += len(rows)
    t.judgements[1] += sum(r["written"] is None for r in rows)
    t.judgements[2] += len({(r["trajectory_id"], r["probe_kind"]) for r in rows if r["report_cut"]})


def _column(r: dict) -> tuple[str, str, int]:
    """The judgement column a row belongs to: (dimension, criterion, pass)."""
    return r["dimension"], r["criterion"], r["pass_idx"]


def _written_by_report(rows: list[dict]) -> dict[tuple[str, str, str, int], float | None]:
    """The written score of each judgement of a report (not a copy), by (trajectory, dimension, criterion, pass):
    what a copy's judgement is compared with."""
    return {(r["trajectory_id"],) + _column(r): r["written"] for r in rows if not r["probe_kind"]}


def column_consistency(rows: list[dict], passes: int, tau: float) -> dict[tuple[str, str, int], float]:
    """One query's judgements of its reports (probe copies are ignored), per column (dimension, criterion, pass):
    the column's consistency reward (score.rewards.consistency) against the other passes."""
    written: dict[tuple[str, str, int], dict[str, float | None]] = defaultdict(dict)
    for r in rows:
        if not r["probe_kind"]:
            written[_column(r)][r["trajectory_id"]] = r["written"]
    tids = list(dict.fromkeys(r["trajectory_id"] for r in rows if not r["probe_kind"]))
    out = {}
    for (d, c, p), col in written.items():
        others = [[written.get((d, c, o), {}).get(tid) for o in range(passes) if o != p] for tid in tids]
        out[(d, c, p)] = consistency([col.get(tid) for tid in tids], others, tau)
    return out


def reward_judgements(rows: list[dict], passes: int, rw, damaged: dict[str, list[str]]) -> None:
    """Fill `reward_kind` and `reward` of one query's judgement rows (`rw`: the reward config section).

    - pair: a report's judgement and its corrupted copy's, on a dimension the corruption damages (`damaged`,
      evaluate.probe_dimensions), same criterion and pass: each earns `pair_credit` against the other's restricted
      distribution (the original should score higher), so both sides are trained and no partner draw adds noise;
    - consistency: any other judgement of a report earns its column's agreement with the other passes less the
      null level (reward.consistency_null), gated by the same column's mean pair credit (`consistency_gated`): a
      judge that scores originals and their copies alike earns nothing for being stable;
    - a judgement that wrote no score (only possible in artifacts written before answers were restricted) earns
      reward.unparsable_judgement. Copies' judgements on other dimensions earn nothing and are not trained."""
    columns = column_consistency(rows, passes, rw.discrimination_tau)
    of_report = {(r["trajectory_id"],) + _column(r): r for r in rows if not r["probe_kind"]}
    credits: dict[tuple[str, str, int], list[float]] = defaultdict(list)  # column -> originals' pair credits
    for r in rows:
        if r["probe_kind"] and r["dimension"] in damaged.get(r["probe_kind"], []):
            original = of_report.get((r["trajectory_id"],) + _column(r))
            if original is None or r["written"] is None or original["written"] is None:
                continue
            r["reward_kind"], original["reward_kind"] = "pair", "pair"
            r["reward"] = pair_credit(round(r["written"]), original["distribution"], above=False)
            original["reward"] = pair_credit(round(original["written"]), r["distribution"], above=True)
            credits[_column(r)].append(original["reward"])
    for r in rows:
        if not r["probe_kind"] and not r["reward_kind"]:
            gate = credits.get(_column(r))
            detection = sum(gate) / len(gate) if gate else None
            r["reward_kind"] = "consistency"
            r["reward"] = consistency_gated(columns[_column(r)], rw.consistency_null, detection)
        if r["reward_kind"] and r["written"] is None:
            r["reward"] = rw.unparsable_judgement


FLAT_ZERO = 0.05  # a flat group whose mean reward is at most this earns nothing: nothing met the gate


def _flat_share(t: _Tallies, flat: float, where) -> float:
    """Share of queries whose solver rewards are flat and whose mean satisfies `where` (at zero, at the top)."""
    return sum(s <= flat and where(m) for s, m in zip(t.stds, t.means)) / len(t.stds)


def _summary(cfg, t: _Tallies, rubrics: dict[str, list[Rubric]], evidence_rows: list[dict], harness: Harness) -> dict:
    """The round's summary row (summary.parquet)."""
    all_rewards = [r["reward"] for r in t.solver_rows]
    valid = [r["reward"] for r in t.solver_rows if r["validity"] > 0]
    fully_valid = [r["reward"] for r in t.solver_rows if r["validity"] >= 1.0]  # a gated reward cannot reach the top
    crowded = cfg.harness.rules.crowded_reward
    base = [e for e in evidence_rows if not e["deeper"] and not e.get("probe_kind")]  # the reports' own checks
    rubric_status = [rub.status for rs in rubrics.values() for rub in rs]
    return {
        "round": t.round_idx,
        "harness_version": harness.version,
        "reports": len(t.solver_rows),
        "saturation_rate": sum(s <= cfg.reward.flat_spread for s in t.stds) / len(t.stds),  # flat, as train counts
        "flat_at_zero": _flat_share(t, cfg.reward.flat_spread, lambda m: m <= FLAT_ZERO),
        "flat_at_top": _flat_share(t, cfg.reward.flat_spread, lambda m: m >= crowded),
        "reward_mean": sum(all_rewards) / len(all_rewards),
        "reward_spread": sum(t.stds) / len(t.stds),
        "valid_share": len(valid) / len(all_rewards),
        "valid_reports": len(fully_valid),
        "top_share": sum(x >= crowded for x in fully_valid) / len(fully_valid) if fully_valid else 0.0,
        "agreement": sum(c for c, _ in t.columns) / len(t.columns) if t.columns else 0.0,
        "score_spread": sum(sd for _, sd in t.columns) / len(t.columns) if t.columns else 0.0,
        "detection": t.detected.rate if t.detected.n else None,  # none probed: no number, not chance
        "probed_reports": t.detected.n,
        "judgements": t.judgements[0],
        "unparsable_rate": t.judgements[1] / t.judgements[0] if t.judgements[0] else 0.0,
        "reports_cut": t.judgements[2],
        "parse_failure_rate": rubric_status.count("failed") / len(rubric_status),
        "parse_repair_rate": (len(rubric_status) - rubric_status.count("ok")) / len(rubric_status),
        "identical_rubric_queries": t.identical_rubrics,
        "search_depth": harness.controls.search_depth,
        "search_hops": harness.controls.search_hops,
        "claims_checked": len(base),
        "search_calls": sum(len(e["queries"]) for e in base),
        "supported_share": sum(e["verdict"] == "supported" for e in base) / len(base) if base else 0.0,
        **_depth_change(evidence_rows),
        **_verdict_figures(evidence_rows),
        "active_dimensions": [d.id for d in harness.active],
        "strictness": harness.controls.strictness,
    }


def citation_precision(rows: list[dict]) -> dict[str, float]:
    """Per trajectory with checked cited claims: the share judged supported by the passages they cite.

    >>> citation_precision([{"trajectory_id": "t", "verdict": v} for v in ("supported", "not_found")])
    {'t': 0.5}
    """
    of: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        of[row["trajectory_id"]].append(row["verdict"] == "supported")
    return {tid: sum(v) / len(v) for tid, v in of.items()}


def cell_means(g: ScoreGroup) -> dict[tuple, float]:
    """Mean score per (rubric, pass, item, corruption, dimension) over that dimension's criteria, first-seen order."""
    cell: dict[tuple, list[float]] = defaultdict(list)
    for key_and_score in zip(g.rubric_idx, g.pass_idx, g.trajectory_id, g.probe_kind, g.dimension, g.score):
        cell[key_and_score[:5]].append(key_and_score[5])
    return {k: sum(v) / len(v) for k, v in cell.items()}


def item_values(
    rubrics: list[Rubric], cells: dict[tuple, float], tid: str, kind: str = "", *, passes: int
) -> list[float]:
    """One item's rubric scores in [0, 1], one per (rubric, pass): what a solver's reward averages (before its
    validity gate) and what `score judge` reports as `overall`."""
    return [_rubric_value(rub, cells, j, p, tid, kind) for j, rub in enumerate(rubrics) for p in range(passes)]


def _rubric_value(rub: Rubric, cells: dict[tuple, float], j: int, p: int, tid: str, kind: str) -> float:
    """Rubric j's weighted score of one item in pass p, in [0, 1]; a dimension with no score counts 0."""
    return rubric_score(list(rub.weights.values()), [cells.get((j, p, tid, kind, d), 0.0) for d in rub.weights])


def _dimension_cells(q: str, cells: dict[tuple, float], damaged: dict[str, list[str]], pd: _PerDimension) -> None:
    """Fold one query's cells into the per-dimension numbers kept across queries: each report's mean score per
    dimension, and per dimension one (original, copy) pair per probed report whose corruption damages it."""
    per_report, probe_pairs, dims = pd.per_report, pd.probe_pairs, pd.dims
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))  # dim -> trajectory -> cells
    copies: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)  # (dim, trajectory, kind)
    for (j, p, tid, kind, d), v in cells.items():
        dims.add(d)
        if not kind:
            scores[d][tid].append(v)
        elif d in damaged.get(kind, []) and (j, p, tid, "", d) in cells:
            copies[(d, tid, kind)].append((cells[(j, p, tid, "", d)], v))
    for (d, _, _), pairs in copies.items():
        probe_pairs[d].add([(sum(o for o, _ in pairs) / len(pairs), sum(c for _, c in pairs) / len(pairs))])
    for d, by_tid in scores.items():
        for tid, vs in by_tid.items():
            if tid in per_report[d]:
                raise ArtifactError(
                    f"trajectory {tid!r} is scored under two queries (again under {q!r}); trajectory ids are "
                    "unique in a round"
                )
            per_report[d][tid] = sum(vs) / len(vs)


def _verdict_figures(evidence_rows: list[dict]) -> dict:
    """Verdicts the evaluator wrote (claims and anchors), the share unparsable, and anchor detection: the mean
    anchor credit over the pairs with both verdicts parsed (1: every anchor got less support than its claim)."""
    written = [
        parsed
        for e in evidence_rows
        for span, parsed in ((e.get("span"), e.get("written")), (e.get("anchor_span"), e.get("anchor_written")))
        if span
    ]
    credits = [
        anchor_credit(e["written"], e["anchor_written"])
        for e in evidence_rows
        if e.get("anchor_span") and e["written"] and e["anchor_written"]
    ]
    return {
        "verdicts": len(written),
        "verdict_unparsable_rate": sum(v is None for v in written) / len(written) if written else 0.0,
        "anchors": len(credits),
        "anchor_detection": sum(credits) / len(credits) if credits else 0.0,
    }


def _depth_change(evidence_rows: list[dict]) -> dict:
    """The search_hops rule's statistic: on the re-checked reports, each claim checked at the harness's search and
    re-checked with more (a passage more per hop, the evaluator's follow-up query), the signed change of its
    calibrated support P(yes) - P(no); their mean and its two-sided 95% interval. No passage found: support 0."""
    support: dict[tuple[str, int, bool], float] = {}
    for e in evidence_rows:
        if not e.get("probe_kind"):  # copies share their original's trajectory id: their checks are not its own
            support[(e["trajectory_id"], e["claim_idx"], e["deeper"])] = e["p_yes"] - e["p_no"]
    changes = [
        v - support[(tid, i, False)] for (tid, i, deeper), v in support.items() if deeper and (tid, i, False) in support
    ]
    mean, low, high = mean_interval(changes)
    finite = [x if math.isfinite(x) else 0.0 for x in (low, high)]
    return {"depth_claims": len(changes), "depth_change": mean, "depth_low": finite[0], "depth_high": finite[1]}


def _dimension_stats(
    round_idx: int,
    by_query: dict[str, list[dict]],
    pd: _PerDimension,
    harness: Harness,
    damaged: dict[str, list[str]],
    confidence: float,
) -> list[dict]:
    """Per dimension: mean (with its lower bound), within-query spread, corruption detection (with its interval),
    each over counts of distinct reports and queries, and its within-query correlation with every other dimension."""
    per_report, probe_pairs, dims = pd.per_report, pd.probe_pairs, sorted(pd.dims)
    status = {d.id: d.status for d in harness.dimensions}
    probed = {d for ds in damaged.values() for d in ds}
    z = NormalDist().inv_cdf(confidence)
    centred = {d: _centred(per_report[d], by_query) for d in dims}
    rows = []
    for d in dims:
        scores = list(per_report[d].values())
        groups = [
            [per_report[d][r["trajectory_id"]] for r in g if r["trajectory_id"] in per_report[d]]
            for g in by_query.values()
        ]
        spreads = [group_std(g) for g in groups if len(g) >= 2]
        mean = sum(scores) / max(len(scores), 1)
        sd = group_std(scores) * math.sqrt(len(scores) / (len(scores) - 1)) if len(scores) > 1 else math.inf
        partners = [_partner(centred[d], centred[o], o) for o in dims if o != d]
        best = max(partners, key=lambda p: p["corr"], default={"dimension": "", "corr": 0.0})
        low, high = wilson(probe_pairs[d].points, probe_pairs[d].n, z)
        rows.append(
            {
                "round": round_idx,
                "dimension": d,
                "status": status.get(d, "active"),
                "mean": mean,
                "mean_low": max(mean - z * sd / math.sqrt(max(len(scores), 1)), 0.0),
                "reports": len(scores),
                "spread": sum(spreads) / max(len(spreads), 1),
                "queries": len(spreads),
                "probed": d in probed,
                "detected": probe_pairs[d].points,
                "probes": probe_pairs[d].n,
                "detection": probe_pairs[d].rate,
                "detection_low": low,
                "detection_high": high,
                "max_corr": best["corr"],
                "max_corr_with": best["dimension"],
                "partners": partners,
            }
        )
    return rows


def _centred(scores: dict[str, float], by_query: dict[str, list[dict]]) -> dict[str, tuple[str, float]]:
    """Each report's score minus its query's mean over the reports scored (with the query): what between-query
    differences leave of a correlation is removed before the redundancy rule reads it."""
    out = {}
    for q, group in by_query.items():
        mine = [r["trajectory_id"] for r in group if r["trajectory_id"] in scores]
        mean = sum(scores[t] for t in mine) / max(len(mine), 1)
        out |= {t: (q, scores[t] - mean) for t in mine}
    return out


def _partner(a: dict[str, tuple[str, float]], b: dict[str, tuple[str, float]], other: str) -> dict:
    """The within-query correlation of two dimensions over the reports scored on both, and its independent pairs
    (reports less queries: centring spends one per query)."""
    common = [t for t in a if t in b]
    corr = correlation([a[t][1] for t in common], [b[t][1] for t in common])
    return {"dimension": other, "corr": corr, "n": len(common) - len({a[t][0] for t in common})}
