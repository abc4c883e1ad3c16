"""harness-evolve: the meta-harness reads the round's statistics and writes the next harness version.

Input: round r's dimension statistics, round summary and the evaluator's proposals (self-evaluate), and
the harness round r ran under. Output: `harness.parquet` (the dimension pool), `controls.parquet` and
`decisions.parquet` (every rule that fired, with its numbers and reason), versioned as round r. Round r+1
evaluates under it, so training never targets a rubric fitted to its own data.

New candidates come from the evaluator's own proposals and, when `harness.llm_controller.enabled`, from a
frozen model behind an OpenAI-compatible endpoint (score.controller); the rules gate both alike. A
controller that cannot be reached fails the stage with the endpoint named: it never silently drops out.

Run alone: `score stage harness-evolve --round 0 [--force]` (needs the round's self-evaluate).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

from score.artifacts import CONTROLS, DECISIONS, DIMENSION_STATS, HARNESS, RUBRICS, SUMMARY
from score.controller import propose
from score.harness import Decision, DimensionStats, Harness, RoundStats, evolve, to_rows
from score.models.openai_client import ChatClient
from score.pipeline import EvolveStats
from score.runner import StageContext

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> EvolveStats:
    cfg, harness = ctx.cfg, ctx.harness
    dim_rows = ctx.read(DIMENSION_STATS).to_pylist()
    summary = ctx.read(SUMMARY).to_pylist()[0]
    rubrics = ctx.read(RUBRICS, columns=["proposal_name", "proposal_description"]).to_pylist()
    stats = {
        r["dimension"]: DimensionStats(
            r["dimension"], r["mean"], r["spread"], r["detection"], r["probes"], r["max_corr"], r["max_corr_with"]
        )
        for r in dim_rows
    }
    proposals = tuple(
        (r["proposal_name"], r["proposal_description"], "evaluator") for r in rubrics if r["proposal_name"]
    )
    if cfg.harness.llm_controller.enabled and cfg.harness.mode == "rules":
        proposals = _llm_proposals(ctx, summary, dim_rows) + proposals
    round_stats = RoundStats(top_share=summary["top_share"], depth_change=summary["depth_change"], proposals=proposals)
    new, decisions = evolve(harness, stats, round_stats, cfg.harness.rules, ctx.round, cfg.harness.mode)
    _write(ctx, new, decisions)
    for d in decisions:
        log.info("round %d harness: %s %s -> %s (%s)", ctx.round, d.rule, d.target, d.action, d.reason)
    controls = asdict(new.controls)
    return EvolveStats(
        version=new.version,
        active=[d.id for d in new.active],
        candidates=[d.id for d in new.candidates],
        retired=[d.id for d in new.dimensions if d.status == "retired"],
        decisions=len(decisions),
        **controls,
    )


def _llm_proposals(ctx: StageContext, summary: dict, dim_rows: list[dict]) -> tuple[tuple[str, str, str], ...]:
    """New dimensions proposed by the frozen model behind the configured endpoint (it goes first)."""
    llm = ctx.cfg.harness.llm_controller
    client = ChatClient.of(llm)
    pool = [d.id for d in ctx.harness.dimensions]
    suggested, answers = propose(client, summary, dim_rows, pool, llm.proposals, ctx.seed)
    log.info("round %d harness: the LLM controller answered %s", ctx.round, answers)
    return tuple((n, d, "llm controller") for n, d in suggested)


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
