"""self-evaluate: the evaluator role (the same weights as the solver) judges the round's reports.

Per query: J rubrics sampled from the model over the harness's active dimensions (candidates get a default
criterion and are judged in the shadow); corrupted copies of a `probe_share` of the reports; evidence checks
on `search_depth` claims per report and per copy (the evaluator writes a verdict on each claim and on its
anchor, the claim with an entity swapped: sampled, trained); then judgements: for every item (report or copy), every
distinct criterion and each of `evaluate.passes` passes, the evaluator writes a score (sampled, stored as a
trainable span; passes differ by the sibling report shown and the evidence order). Then the rewards: the
evaluator's per judgement (two-sided pair credit on original/copy pairs, gated consistency) and per rubric,
the solver's per report (from the score `evaluate.score_source` names), and the round's statistics, in one
streaming pass (`round_statistics`).

One module per phase: `rubrics.py` (1. J rubrics per query), `probes.py` (2. corrupted copies), `evidence.py`
(3. claims checked against passages), `judgements.py` (4. every item on every criterion, per pass),
`statistics.py` (5. rewards and the round's statistics, streaming); this module runs them in order.
Its contract (what it reads, writes and may configure) is `score.pipeline.EVALUATE`.
With `evaluate.rationale_tokens` > 0 a short reasoning is written (and trained) before every score; the CPU
default writes the score alone (a rationale is a sampled span per judgement).

Deliberately left out: which claims are checked (`score.evidence.pick_claims`: cited sentences first) and what
is searched for them (`search_claim`) are still chosen by code, not written by the evaluator.

Run alone: `score stage self-evaluate --round 0 [--force]` (needs the round's generate-reports).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass
from itertools import groupby

from score.harness import Harness
from score.models import Backend
from score.pipeline import EvaluateStats
from score.rubrics import Rubric
from score.runner import StageContext
from score.stages.evaluate.evidence import check_citations, check_evidence
from score.stages.evaluate.judgements import judge_items
from score.stages.evaluate.probes import corrupt
from score.stages.evaluate.rubrics import rubric_of_row, write_rubrics
from score.stages.evaluate.statistics import groups_from_rows, reward_judgements, round_statistics
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
    Artifact,
)
from score.workspace import Workspace


def run(ctx: StageContext) -> EvaluateStats:
    """The stage whole, or the closing step over its shards (`evaluate.shards` > 1: each judged its queries)."""
    reports = ctx.read(REPORTS).to_pylist()
    t0, shard_seconds = time.perf_counter(), 0.0
    if ctx.shards > 1:
        judged = _from_shards(ctx, reports)
        shard_seconds = sum(m.seconds for m in ctx.shard_manifests())  # the work's, whatever ran at once
    else:
        judged = judge(ctx.ws, ctx.ws.backend(ctx.policy), reports, ctx.harness, ctx.seed, ctx.round)
    # 5. rewards and statistics, one query at a time (the same pass reads a written scores.parquet: stream_scores);
    # fed the judged rows, not the file, so rewards come from the float64 scores, not their float32 copies (a
    # sharded stage's come from the shards' files: float32)
    stats = round_statistics(
        ctx.cfg,
        ctx.round,
        judged.by_query,
        judged.rubrics,
        groups_from_rows(judged.score_rows),
        judged.evidence_rows,
        ctx.harness,
        judged.judgements_by_query(),
        judged.citation_rows,
    )
    seconds = time.perf_counter() - t0 + shard_seconds
    for artifact, rows in [
        *judged.tables(),
        (SOLVER_REWARDS, stats.solver_rows),
        (EVALUATOR_REWARDS, stats.evaluator_rows),
        (DIMENSION_STATS, stats.dimension_rows),
        (SUMMARY, [stats.summary]),
    ]:
        ctx.write(artifact, rows)
    numbers = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.summary.items() if k != "round"}
    out = EvaluateStats(**numbers, seconds_per_report=round(seconds / max(len(reports), 1), 2))
    return out


def shard(ctx: StageContext) -> dict:
    """Phases 1-4 for this shard's share of the round's queries (every n-th, in the reports' order)."""
    reports = ctx.read(REPORTS).to_pylist()
    mine = set(ctx.mine(list(dict.fromkeys(r["query_id"] for r in reports))))
    reports = [r for r in reports if r["query_id"] in mine]
    judged = judge(ctx.ws, ctx.ws.backend(ctx.policy), reports, ctx.harness, ctx.seed, ctx.round)
    for artifact, rows in judged.tables():
        ctx.write(artifact, rows)
    return {"queries": len(mine), "reports": len(reports), "judgements": len(judged.judgement_rows)}


def _from_shards(ctx: StageContext, reports: list[dict]) -> Judged:
    """What the shards judged, as one Judged in the reports' query order (the order the statistics read)."""
    by_query = _by_query(reports)
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


def _by_query(reports: list[dict]) -> dict[str, list[dict]]:
    """Reports grouped by query, queries in first-seen order, each group by sample_idx."""
    by_query: dict[str, list[dict]] = defaultdict(list)
    for r in reports:
        by_query[r["query_id"]].append(r)
    for group in by_query.values():
        group.sort(key=lambda r: r["sample_idx"])
    return by_query


@dataclass
class Judged:
    """What the evaluator role made of a set of reports: the rows of the stage's tables, and the parsed rubrics."""

    by_query: dict[str, list[dict]]  # query id -> its reports, by sample_idx
    rubrics: dict[str, list[Rubric]]  # query id -> its J rubrics
    rubric_rows: list[dict]
    evidence_rows: list[dict]
    probe_rows: list[dict]
    score_rows: list[dict]
    judgement_rows: list[dict]  # rewarded (reward_judgements)
    citation_rows: list[dict]  # each report's cited claims against the passages they cite

    def tables(self) -> list[tuple[Artifact, list[dict]]]:
        """The artifacts judging writes (a shard's), with their rows."""
        return [
            (RUBRICS, self.rubric_rows),
            (EVIDENCE, self.evidence_rows),
            (CITATIONS, self.citation_rows),
            (PROBES, self.probe_rows),
            (SCORES, self.score_rows),
            (JUDGEMENT_SPANS, self.judgement_rows),
        ]

    def judgements_by_query(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = defaultdict(list)
        for j in self.judgement_rows:
            out[j["query_id"]].append(j)
        return out


def judge(
    ws: Workspace,
    backend: Backend,
    reports: list[dict],
    harness: Harness,
    seed: int,
    round_idx: int = 0,
    probe_share: float | None = None,
    depth_probe_share: float | None = None,
    siblings: bool = True,
    citations: bool = True,
) -> Judged:
    """Rubrics, evidence checks, corruption probes and scores for `reports` (rows shaped like reports.parquet:
    query_id, query, sample_idx, trajectory_id, report, sources) under `harness`. Probe shares default to the
    config's; `score judge` sets them to 0 and `siblings` off to score outside reports as they are (a row's
    score must not depend on the other rows of its file), and `citations` off (outside reports carry no sources)."""
    ev = ws.cfg.evaluate
    by_query = _by_query(reports)
    rubrics, rubric_rows = write_rubrics(ws, backend, by_query, harness, seed, round_idx)  # 1. J rubrics per query
    rng = random.Random(seed)  # 2. and 3. draw from one stream, in this order
    share = ev.probe_share if probe_share is None else probe_share
    probe_rows, probes_of = corrupt(ev.probe_kinds, reports, rng, share, seed, round_idx)
    copies = [
        {**r, "report": text, "probe_kind": kind}
        for r in reports
        for tid, kind, text in probes_of[r["query_id"]]
        if tid == r["trajectory_id"]
    ]
    share = ev.depth_probe_share if depth_probe_share is None else depth_probe_share
    evidence_rows, evidence_text = check_evidence(ws, backend, reports + copies, harness, rng, share, round_idx, seed)
    judgement_rows, score_rows = judge_items(  # 4.
        ws, backend, by_query, rubrics, probes_of, evidence_text, harness, seed, round_idx, siblings
    )
    for _, rows in groupby(judgement_rows, key=lambda j: j["query_id"]):  # 5a. the evaluator's reward per judgement
        reward_judgements(list(rows), ev.passes, ws.cfg.reward, ev.probe_dimensions)
    citation_rows = check_citations(ws, backend, reports, round_idx, seed) if citations else []  # 6.
    return Judged(by_query, rubrics, rubric_rows, evidence_rows, probe_rows, score_rows, judgement_rows, citation_rows)
