"""self-evaluate, phase 5: the round's statistics from its score rows, in one streaming pass: rewards per report
(solver) and per rubric (evaluator), per-dimension statistics (what the meta-harness reads) and the round's
summary. The score-to-reward arithmetic has its one home here (`cell_means`, `item_values`); `score judge`
uses it too.

Queries are taken one at a time and each is reduced and dropped before the next is read, so memory grows with
reports, not with score rows: self-evaluate feeds it the rows it just judged (`groups_from_rows`), and the same
pass reads a finished scores.parquet in batches (`stream_scores`, through `Store.iter_batches`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby

import pyarrow as pa

from score.artifacts import SCORES, STREAM_BATCH_ROWS, ArtifactError, Store
from score.harness import Harness
from score.rewards import (
    correlation,
    detection_points,
    detection_rate,
    detection_share,
    evaluator_reward,
    group_std,
    rank_agreement,
    rubric_score,
    solver_rewards,
    validity,
)
from score.rubrics import Rubric

PASSES = (0, 1)  # the two judging passes

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
class RoundStatistics:
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
class _Tallies:
    """What round_statistics keeps across queries: per-report numbers and counts, never score rows."""

    solver_rows: list[dict]
    evaluator_rows: list[dict]
    stds: list[float]
    agreements: list[float]
    detected: _Pairs
    per_report: dict[str, dict[str, float]]  # dimension -> trajectory -> mean over rubrics, passes
    probe_pairs: dict[str, _Pairs]  # dimension -> its (original, corrupted) pairs, counted
    dims: set[str]


def round_statistics(
    cfg,
    round_idx: int,
    by_query: dict[str, list[dict]],
    rubrics: dict[str, list[Rubric]],
    groups: Iterable[ScoreGroup],
    evidence_rows: list[dict],
    harness: Harness,
) -> RoundStatistics:
    """Rewards and statistics in one pass over per-query score groups (`groups_from_rows`, `stream_scores`).

    Queries are taken in `by_query` order, and each group is reduced and dropped before the next is read: across
    queries only per-report numbers are kept (rewards, per-dimension means for the correlations) and tallies, so
    memory grows with reports, not with score rows. A query's rows must come together, queries in `by_query`
    order (the order `judge` writes them); a query with no rows scores 0, as a rubric dimension with none does.
    `cfg` is the run config (or a stage's view of it): reward, and harness.rules.crowded_reward, are read.
    """
    groups = iter(groups)
    ahead = next(groups, None)
    t = _Tallies([], [], [], [], _Pairs(), defaultdict(dict), defaultdict(_Pairs), set())
    for q, group in by_query.items():
        cells = {}
        if ahead is not None and ahead.query_id == q:
            cells, ahead = cell_means(ahead), next(groups, None)
        _query_rewards(cfg.reward, round_idx, q, group, rubrics[q], cells, t)
        _dimension_cells(q, cells, t.per_report, t.probe_pairs, t.dims)
    if ahead is not None:
        raise ArtifactError(
            f"score rows of query {ahead.query_id!r} come out of order or belong to no report: rows must come grouped "
            f"by query, queries in the reports' order (as self-evaluate writes scores.parquet)"
        )
    dim_rows = _dimension_stats(round_idx, by_query, t.per_report, t.probe_pairs, sorted(t.dims), harness)
    summary = _summary(cfg, round_idx, t, rubrics, evidence_rows, harness)
    return RoundStatistics(t.solver_rows, t.evaluator_rows, dim_rows, summary)


def _query_rewards(
    rw, round_idx: int, q: str, group: list[dict], rubs: list[Rubric], cells: dict[tuple, float], t: _Tallies
) -> None:
    """One query's solver rewards (per report) and evaluator rewards (per rubric), into the tallies."""
    tids = [r["trajectory_id"] for r in group]
    probe_keys = sorted({(tid, kind) for _, _, tid, kind, _ in cells if kind})  # (trajectory, corruption) scored
    values = [item_values(rubs, cells, tid) for tid in tids]
    valid = [
        validity(
            r["report"],
            r["finish_reason"],
            len(r["cited"]),
            min_chars=rw.min_report_chars,
            empty=rw.empty_validity,
            truncated=rw.truncated_validity,
            uncited=rw.uncited_validity,
        )
        for r in group
    ]
    rewards = solver_rewards(valid, values)
    mean, std = sum(rewards) / len(rewards), group_std(rewards)
    t.stds.append(std)
    for r, v, val, rew in zip(group, valid, values, rewards):
        t.solver_rows.append(
            {
                "round": round_idx,
                "query_id": q,
                "trajectory_id": r["trajectory_id"],
                "validity": v,
                "score": sum(val) / len(val),
                "reward": rew,
                "group_mean": mean,
                "group_std": std,
            }
        )
    for j, rub in enumerate(rubs):
        a = [_rubric_value(rub, cells, j, 0, tid, "") for tid in tids]
        b = [_rubric_value(rub, cells, j, 1, tid, "") for tid in tids]
        pairs = [
            (_rubric_value(rub, cells, j, p, tid, ""), _rubric_value(rub, cells, j, p, tid, kind))
            for tid, kind in probe_keys
            for p in PASSES
        ]
        t.detected.add(pairs)
        t.agreements.append(rank_agreement(a, b))
        t.evaluator_rows.append(
            {
                "round": round_idx,
                "query_id": q,
                "rubric_idx": j,
                "agreement": t.agreements[-1],
                "detection": detection_rate(pairs),
                "probe_pairs": len(pairs),
                "reward": evaluator_reward(a, b, pairs, rw.probe_weight),
            }
        )


def _summary(
    cfg, round_idx: int, t: _Tallies, rubrics: dict[str, list[Rubric]], evidence_rows: list[dict], harness: Harness
) -> dict:
    """The round's summary row (summary.parquet)."""
    all_rewards = [r["reward"] for r in t.solver_rows]
    valid_rewards = [r["reward"] for r in t.solver_rows if r["validity"] > 0]
    crowded = cfg.harness.rules.crowded_reward
    base = [e for e in evidence_rows if not e["deeper"]]
    rubric_status = [rub.status for rs in rubrics.values() for rub in rs]
    return {
        "round": round_idx,
        "harness_version": harness.version,
        "reports": len(t.solver_rows),
        "saturation_rate": sum(s < cfg.reward.flat_spread for s in t.stds) / len(t.stds),
        "reward_mean": sum(all_rewards) / len(all_rewards),
        "reward_spread": sum(t.stds) / len(t.stds),
        "valid_share": len(valid_rewards) / len(all_rewards),
        "top_share": sum(x >= crowded for x in valid_rewards) / len(valid_rewards) if valid_rewards else 0.0,
        "agreement": sum(t.agreements) / len(t.agreements),
        "detection": t.detected.rate,
        "parse_failure_rate": rubric_status.count("failed") / len(rubric_status),
        "parse_repair_rate": (len(rubric_status) - rubric_status.count("ok")) / len(rubric_status),
        "search_depth": harness.controls.search_depth,
        "search_hops": harness.controls.search_hops,
        "claims_checked": len(base),
        "supported_share": sum(e["verdict"] == "supported" for e in base) / len(base) if base else 0.0,
        "depth_change": _depth_change(evidence_rows),
        "active_dimensions": [d.id for d in harness.active],
        "strictness": harness.controls.strictness,
    }


def cell_means(g: ScoreGroup) -> dict[tuple, float]:
    """Mean score per (rubric, pass, item, corruption, dimension) over that dimension's criteria, first-seen order."""
    cell: dict[tuple, list[float]] = defaultdict(list)
    for key_and_score in zip(g.rubric_idx, g.pass_idx, g.trajectory_id, g.probe_kind, g.dimension, g.score):
        cell[key_and_score[:5]].append(key_and_score[5])
    return {k: sum(v) / len(v) for k, v in cell.items()}


def item_values(rubrics: list[Rubric], cells: dict[tuple, float], tid: str, kind: str = "") -> list[float]:
    """One item's rubric scores in [0, 1], one per (rubric, pass): what a solver's reward averages (before its
    validity gate) and what `score judge` reports as `overall`."""
    return [_rubric_value(rub, cells, j, p, tid, kind) for j, rub in enumerate(rubrics) for p in PASSES]


def _rubric_value(rub: Rubric, cells: dict[tuple, float], j: int, p: int, tid: str, kind: str) -> float:
    """Rubric j's weighted score of one item in pass p, in [0, 1]; a dimension with no score counts 0."""
    return rubric_score(list(rub.weights.values()), [cells.get((j, p, tid, kind, d), 0.0) for d in rub.weights])


def _dimension_cells(
    q: str,
    cells: dict[tuple, float],
    per_report: dict[str, dict[str, float]],
    probe_pairs: dict[str, _Pairs],
    dims: set[str],
) -> None:
    """Fold one query's cells into the per-dimension numbers kept across queries."""
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))  # dim -> trajectory -> cells
    for (j, p, tid, kind, d), v in cells.items():
        dims.add(d)
        if not kind:
            scores[d][tid].append(v)
        else:
            original = cells.get((j, p, tid, "", d))
            if original is not None:
                probe_pairs[d].add([(original, v)])
    for d, by_tid in scores.items():
        for tid, vs in by_tid.items():
            if tid in per_report[d]:
                raise ArtifactError(
                    f"trajectory {tid!r} is scored under two queries (again under {q!r}); trajectory ids are "
                    "unique in a round"
                )
            per_report[d][tid] = sum(vs) / len(vs)


def _depth_change(evidence_rows) -> float:
    """Mean |supported share with the deeper check - at the harness's depth| over depth-probed reports."""
    shares: dict[tuple[str, bool], list[bool]] = defaultdict(list)
    for e in evidence_rows:
        shares[(e["trajectory_id"], e["deeper"])].append(e["verdict"] == "supported")
    deltas = []
    for (tid, deeper), deep in shares.items():
        if deeper:
            base = shares.get((tid, False), [])
            deltas.append(abs(sum(deep) / len(deep) - (sum(base) / len(base) if base else 0.0)))
    return sum(deltas) / len(deltas) if deltas else 0.0


def _dimension_stats(
    round_idx: int,
    by_query: dict[str, list[dict]],
    per_report: dict[str, dict[str, float]],
    probe_pairs: dict[str, _Pairs],
    dims: list[str],
    harness: Harness,
) -> list[dict]:
    """Per dimension: mean, within-query spread, corruption detection, and its highest correlation with another."""
    status = {d.id: d.status for d in harness.dimensions}
    rows = []
    for d in dims:
        scores = per_report[d]
        spreads = [
            group_std([scores[r["trajectory_id"]] for r in g if r["trajectory_id"] in scores])
            for g in by_query.values()
        ]
        best, best_with = 0.0, ""
        for other in dims:
            if other != d:
                common = [t for t in scores if t in per_report[other]]
                c = correlation([scores[t] for t in common], [per_report[other][t] for t in common])
                if c > best:
                    best, best_with = c, other
        rows.append(
            {
                "round": round_idx,
                "dimension": d,
                "status": status.get(d, "active"),
                "mean": sum(scores.values()) / max(len(scores), 1),
                "spread": sum(spreads) / max(len(spreads), 1),
                "detection": probe_pairs[d].rate,
                "probes": probe_pairs[d].n,
                "max_corr": best,
                "max_corr_with": best_with,
            }
        )
    return rows
