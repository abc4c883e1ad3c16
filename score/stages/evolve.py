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

import pyarrow as pa

from score.artifacts import CONTROLS_SCHEMA, DECISIONS_SCHEMA, HARNESS_SCHEMA, round_dir
from score.controller import propose
from score.harness import DimensionStats, RoundStats, evolve, to_rows
from score.models.openai_client import ChatClient
from score.stages.base import StageResult, derive_seed, harness_for_round, upstream
from score.workspace import Workspace

log = logging.getLogger(__name__)

NAME = "harness-evolve"
FOLDER = "harness"
CONFIG = ("seed", "harness")


def inputs(ws: Workspace, round_idx: int) -> dict[str, str]:
    return {"evaluations": upstream(ws, round_idx, "evaluate"), "harness": harness_for_round(ws, round_idx)[1]}


def run(ws: Workspace, round_idx: int, folder: str) -> StageResult:
    evaluate = f"{round_dir(ws.cfg.run, round_idx)}/evaluate"
    harness, _ = harness_for_round(ws, round_idx)
    dim_rows = ws.store.read_table(evaluate, "dimension_stats.parquet").to_pylist()
    summary = ws.store.read_table(evaluate, "summary.parquet").to_pylist()[0]
    rubrics = ws.store.read_table(evaluate, "rubrics.parquet").select(["proposal_name", "proposal_description"]).to_pylist()
    stats = {
        r["dimension"]: DimensionStats(r["dimension"], r["mean"], r["spread"], r["detection"], r["probes"], r["max_corr"], r["max_corr_with"])
        for r in dim_rows
    }
    proposals = tuple((r["proposal_name"], r["proposal_description"], "evaluator") for r in rubrics if r["proposal_name"])
    llm = ws.cfg.harness.llm_controller
    if llm.enabled and ws.cfg.harness.mode == "rules":
        client = ChatClient(llm.base_url, llm.model, llm.api_key_env, llm.timeout_s)
        pool = [d.id for d in harness.dimensions]
        suggested, answers = propose(client, summary, dim_rows, pool, llm.proposals, derive_seed(ws.cfg.seed, round_idx, NAME))
        log.info("round %d harness: the LLM controller answered %s", round_idx, answers)
        proposals = tuple((n, d, "llm controller") for n, d in suggested) + proposals
    round_stats = RoundStats(top_share=summary["top_share"], depth_change=summary["depth_change"], proposals=proposals)
    new, decisions = evolve(harness, stats, round_stats, ws.cfg.harness.rules, round_idx, ws.cfg.harness.mode)
    dims, controls = to_rows(new)
    decision_rows = [
        {"round": round_idx, **{k: v for k, v in asdict(d).items() if k != "numbers"}, "numbers": json.dumps(d.numbers, sort_keys=True)}
        for d in decisions
    ]
    files = {
        "harness.parquet": ws.store.write_table(folder, "harness.parquet", pa.Table.from_pylist(dims, schema=HARNESS_SCHEMA)),
        "controls.parquet": ws.store.write_table(folder, "controls.parquet", pa.Table.from_pylist([controls], schema=CONTROLS_SCHEMA)),
        "decisions.parquet": ws.store.write_table(folder, "decisions.parquet", pa.Table.from_pylist(decision_rows, schema=DECISIONS_SCHEMA)),
    }
    for d in decisions:
        log.info("round %d harness: %s %s -> %s (%s)", round_idx, d.rule, d.target, d.action, d.reason)
    out = {
        "version": new.version,
        "active": [d.id for d in new.active],
        "candidates": [d.id for d in new.candidates],
        "retired": [d.id for d in new.dimensions if d.status == "retired"],
        "decisions": len(decisions),
        **{k: v for k, v in controls.items() if k != "version"},
    }
    return StageResult(files=files, stats=out)
