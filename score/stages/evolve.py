"""harness-evolve: the meta-harness reads the round's statistics and writes the next harness version.

Input: round r's dimension statistics, round summary and the evaluator's proposals (self-evaluate), the harness
round r ran under, and (with benchmark.each_round) what the judge-hacking alarm reads: the in-loop reward of rounds
r-1 and r beside the held-out benchmark score of the policies that wrote them. Output: `harness.parquet` (the
dimension pool), `controls.parquet` and `decisions.parquet` (every rule that fired, with its statistic, interval,
counts, threshold and reason), versioned as round r. Round r+1 evaluates under it, so training never targets a
rubric fitted to its own data.

Proposals come from the evaluator's rubrics (new dimensions) and, when `harness.llm_controller.enabled`, from a
frozen model behind an OpenAI-compatible endpoint (score.controller: new dimensions, retirements, control changes);
both go through the same gates, capped per source (`rules.max_proposals`). A controller that cannot be reached
fails the stage with the endpoint named: it never silently drops out.

Run alone: `score stage harness-evolve --round 0 [--force]` (needs the round's self-evaluate).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace

from score.controller import propose
from score.harness import (
    Decision,
    DimensionStats,
    Harness,
    Proposal,
    RoundSignals,
    Vocabulary,
    evolve,
    to_rows,
    vocabulary,
)
from score.models.openai_client import ChatClient
from score.pipeline import EvolveStats
from score.runner import StageContext
from score.store.schemas import CONTROLS, DECISIONS, DIMENSION_STATS, HARNESS, RUBRICS, SUMMARY

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> EvolveStats:
    cfg, harness = ctx.cfg, ctx.harness
    dim_rows = ctx.read(DIMENSION_STATS).to_pylist()
    summary = ctx.read(SUMMARY).to_pylist()[0]
    rubrics = ctx.read(RUBRICS, columns=["proposal_name", "proposal_description"]).to_pylist()
    stats = {r["dimension"]: dimension_stats(r) for r in dim_rows}
    proposals = tuple(
        Proposal("dimension", r["proposal_name"], r["proposal_description"], "evaluator")
        for r in rubrics
        if r["proposal_name"]
    )
    if cfg.harness.llm_controller.enabled and cfg.harness.mode == "rules":
        proposals += _llm_proposals(ctx, summary, dim_rows)
    signals = replace(round_stats(summary, proposals, ctx.alarm), vocabulary=_vocabulary(ctx))
    new, decisions = evolve(harness, stats, signals, cfg.harness.rules, ctx.round, cfg.harness.mode)
    _write(ctx, new, decisions)
    for d in decisions:
        log.info("round %d harness: %s %s -> %s (%s)", ctx.round, d.rule, d.target, d.action, d.reason)
    return EvolveStats(
        version=new.version,
        active=[d.id for d in new.active],
        candidates=[d.id for d in new.candidates],
        retired=[d.id for d in new.dimensions if d.status == "retired"],
        decisions=len(decisions),
        alarms=sum(d.rule == "alarm" and d.action == "flag" for d in decisions),
        **asdict(new.controls),
    )


def _vocabulary(ctx: StageContext) -> Vocabulary:
    """The words a proposed dimension is checked against: the corpus (bm25; none with web search), the training
    queries and the seed dimensions' descriptions."""
    corpus = getattr(ctx.search, "texts", [])
    seeds = [f"{d.id.replace('_', ' ')} {d.description}" for d in ctx.cfg.harness.dimensions]
    return vocabulary(corpus, [q.text for q in ctx.queries], seeds)


def dimension_stats(row: dict) -> DimensionStats:
    """A dimension_stats.parquet row as the rules read it."""
    partners = tuple((p["dimension"], p["corr"], p["n"]) for p in row["partners"])
    fields = ("mean", "mean_low", "reports", "spread", "queries", "detected", "probes", "probed")
    return DimensionStats(row["dimension"], *(row[f] for f in fields), partners)


def round_stats(summary: dict, proposals: tuple[Proposal, ...], alarm) -> RoundSignals:
    """A summary.parquet row, the round's proposals and the alarm's inputs as the rules read them."""
    valid = summary["valid_reports"]
    return RoundSignals(
        valid_reports=valid,
        top_reports=round(summary["top_share"] * valid),
        depth_claims=summary["depth_claims"],
        depth_change=summary["depth_change"],
        depth_low=summary["depth_low"],
        depth_high=summary["depth_high"],
        proposals=proposals,
        alarm=alarm,
    )


def _llm_proposals(ctx: StageContext, summary: dict, dim_rows: list[dict]) -> tuple[Proposal, ...]:
    """Changes proposed by the frozen model behind the configured endpoint (after the evaluator's own)."""
    llm = ctx.cfg.harness.llm_controller
    client = ChatClient.of(llm)
    suggested, answers = propose(client, summary, dim_rows, ctx.harness, llm.proposals, ctx.seed)
    log.info("round %d harness: the LLM controller answered %s", ctx.round, answers)
    return tuple(suggested)


def _write(ctx: StageContext, new: Harness, decisions: list[Decision]) -> None:
    dims, controls = to_rows(new)
    decision_rows = [
        {
            "round": ctx.round,
            **{k: v for k, v in asdict(d).items() if k != "numbers"},
            "numbers": json.dumps(d.numbers, sort_keys=True),
        }
        for d in decisions
    ]
    ctx.write(HARNESS, dims)
    ctx.write(CONTROLS, [controls])
    ctx.write(DECISIONS, decision_rows)
