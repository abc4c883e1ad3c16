"""generate-reports: the solver role (`score.solver`) writes K cited research reports per query of the round.

Run alone: `score stage generate-reports --round 0 [--force]`.
"""

from __future__ import annotations

from dataclasses import replace

from score.pipeline import GenerateStats
from score.queries import Query, round_queries
from score.runner import StageContext
from score.solver import research, row_stats
from score.store.schemas import REPORTS


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
    return stats


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
    return replace(
        row_stats(rows),
        completion_tokens=written,
        tokens_per_second=round(written / seconds, 2) if seconds else 0.0,
        mean_report_tokens=round(
            sum(a * p.mean_report_tokens for a, p in zip(answered, parts)) / max(sum(answered), 1), 1
        ),
    )


def _round_queries(ctx: StageContext) -> list[Query]:
    return round_queries(ctx.queries, ctx.cfg.data.queries_per_round, ctx.round, ctx.cfg.seed)
