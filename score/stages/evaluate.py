"""self-evaluate: the evaluator role (`score.evaluator`, the same weights as the solver) judges the round's
reports (phases 1-4: rubrics, probes, evidence, judgements), then computes both roles' rewards and the round's
statistics in one streaming pass (phase 5: `score.evaluator.statistics.round_statistics`).

Run alone: `score stage self-evaluate --round 0 [--force]` (needs the round's generate-reports).
"""

from __future__ import annotations

import time

from score.evaluator import Evaluation, Judged, evaluate_reports, group_by_query
from score.evaluator.rubrics import rubric_of_row
from score.evaluator.statistics import groups_from_rows, round_statistics
from score.pipeline import EvaluateStats
from score.rubrics import Rubric
from score.runner import StageContext
from score.store.schemas import (
    CITATIONS,
    DIMENSION_STATS,
    EVALUATOR_REWARDS,
    EVIDENCE,
    JUDGEMENT_SPANS,
    PROBES,
    REPORTS,
    RUBRICS,
    SCORES,
    SOLVER_REWARDS,
    SUMMARY,
)


def run(ctx: StageContext) -> EvaluateStats:
    """The stage whole, or the closing step over its shards (`evaluate.shards` > 1: each judged its queries)."""
    reports = ctx.read(REPORTS).to_pylist()
    t0, shard_seconds = time.perf_counter(), 0.0
    if ctx.shards > 1:
        judged = _from_shards(ctx, reports)
        shard_seconds = sum(m.seconds for m in ctx.shard_manifests())  # the work's, whatever ran at once
    else:
        judged = evaluate_reports(_evaluation(ctx), reports)
    # 5. rewards and statistics, one query at a time (the same pass reads a written scores.parquet: stream_scores);
    # fed the judged rows, not the file, so rewards come from the float64 scores, not their float32 copies (a
    # sharded stage's come from the shards' files: float32)
    stats = round_statistics(ctx.cfg, ctx.round, judged, groups_from_rows(judged.score_rows), ctx.harness)
    seconds = time.perf_counter() - t0 + shard_seconds
    for artifact, rows in [
        *judged.tables(),
        (SOLVER_REWARDS, stats.solver_rows),
        (EVALUATOR_REWARDS, stats.evaluator_rows),
        (DIMENSION_STATS, stats.dimension_rows),
        (SUMMARY, [stats.summary]),
    ]:
        ctx.write(artifact, rows)
    numbers = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.summary.items()}
    out = EvaluateStats(**numbers, seconds_per_report=round(seconds / max(len(reports), 1), 2))
    return out


def shard(ctx: StageContext) -> dict:
    """Phases 1-4 for this shard's share of the round's queries (every n-th, in the reports' order)."""
    reports = ctx.read(REPORTS).to_pylist()
    mine = set(ctx.mine(list(dict.fromkeys(r["query_id"] for r in reports))))
    reports = [r for r in reports if r["query_id"] in mine]
    judged = evaluate_reports(_evaluation(ctx), reports)
    for artifact, rows in judged.tables():
        ctx.write(artifact, rows)
    return {"queries": len(mine), "reports": len(reports), "judgements": len(judged.judgement_rows)}


def _from_shards(ctx: StageContext, reports: list[dict]) -> Judged:
    """What the shards judged, as one Judged in the reports' query order (the order the statistics read)."""
    by_query = group_by_query(reports)
    order = {q: i for i, q in enumerate(by_query)}

    def rows(artifact) -> list[dict]:  # stable: each query's rows keep their order
        return sorted(ctx.read_shards(artifact).to_pylist(), key=lambda r: order[r["query_id"]])

    rubric_rows = rows(RUBRICS)
    rubrics: dict[str, list[Rubric]] = {q: [] for q in by_query}
    for r in sorted(rubric_rows, key=lambda r: (order[r["query_id"]], r["rubric_idx"])):
        rubrics[r["query_id"]].append(rubric_of_row(r))
    return Judged(
        by_query,
        rubrics,
        rubric_rows,
        rows(EVIDENCE),
        rows(PROBES),
        rows(SCORES),
        rows(JUDGEMENT_SPANS),
        rows(CITATIONS),
    )


def _evaluation(ctx: StageContext) -> Evaluation:
    return Evaluation(ctx.ws, ctx.ws.backend(ctx.judge), ctx.harness, ctx.seed, ctx.round)
