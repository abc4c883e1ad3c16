"""generate-reports: the solver role (`score.solver`) writes K cited research reports per query of the round.

Run alone: `score stage generate-reports --round 0 [--force]`.
"""

from __future__ import annotations

from dataclasses import replace

from score.gold import means, measure_rows
from score.pipeline import GenerateStats
from score.queries import Query, round_queries
from score.runner import StageContext
from score.solver import research, row_stats
from score.store.schemas import GOLD, REPORTS


def run(ctx: StageContext) -> GenerateStats:
    """The stage whole, or the closing step over its shards (`generate.shards` > 1)."""
    if ctx.shards > 1:
        return close(ctx)
    return shard(ctx)


def shard(ctx: StageContext) -> GenerateStats:
    """The trajectories of this shard's share of the round's queries (all of them when the stage runs whole)."""
    queries = ctx.mine(_round_queries(ctx))
    rows, stats = research(ctx.ws, queries, ctx.policy, ctx.seed, ctx.round)
    ctx.write(REPORTS, rows)
    return _with_gold(ctx, stats, rows, queries)


def _with_gold(ctx: StageContext, stats: GenerateStats, rows: list[dict], queries: list[Query]) -> GenerateStats:
    """Write gold.parquet (score.gold: measurement only, no reward reads it) and put its means in the statistics."""
    gold_rows = measure_rows(rows, queries)
    ctx.write(GOLD, gold_rows)
    m = means(gold_rows)
    return replace(
        stats,
        found_recall=m["found_recall"],
        gold_recall=m["gold_recall"],
        gold_precision=m["gold_precision"],
        answer_accuracy=m["answer_correct"],
    )


def close(ctx: StageContext) -> GenerateStats:
    """The shards' reports as one table in the round's query order, and the stage's statistics: the shares
    recomputed from the rows, the token counts and rates from the shards' own."""
    order = {q.id: i for i, q in enumerate(_round_queries(ctx))}
    rows = sorted(ctx.read_shards(REPORTS).to_pylist(), key=lambda r: (order[r["query_id"]], r["sample_idx"]))
    ctx.write(REPORTS, rows)
    parts = [m.stats_as(GenerateStats) for m in ctx.shard_manifests()]
    written = sum(p.completion_tokens for p in parts)
    seconds = sum(p.completion_tokens / p.tokens_per_second for p in parts if p.tokens_per_second)
    answered = [p.reports * p.answer_rate for p in parts]
    stats = replace(
        row_stats(rows),
        completion_tokens=written,
        tokens_per_second=round(written / seconds, 2) if seconds else 0.0,
        mean_report_tokens=round(
            sum(a * p.mean_report_tokens for a, p in zip(answered, parts)) / max(sum(answered), 1), 1
        ),
    )
    return _with_gold(ctx, stats, rows, _round_queries(ctx))


def _round_queries(ctx: StageContext) -> list[Query]:
    return round_queries(ctx.queries, ctx.cfg.data.queries_per_round, ctx.round, ctx.cfg.seed)
