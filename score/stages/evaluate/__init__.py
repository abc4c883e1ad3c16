"""self-evaluate: the evaluator role (the same weights as the solver) judges the round's reports.

Per query: J rubrics sampled from the model over the harness's active dimensions (candidates get a default
criterion and are judged in the shadow); corrupted copies of a `probe_share` of the reports; evidence checks
on `search_depth` claims per report and per copy (the evaluator writes a verdict on each claim and on its
anchor, the claim with an entity swapped: sampled, trained); then judgements: for every item (report or copy), every
distinct criterion and each of `evaluate.passes` passes, the evaluator writes a score (sampled, stored as a
trainable span; passes differ by the sibling report shown and the evidence order). Then the rewards: the
evaluator's per judgement (consistency, probe credit) and per rubric, the solver's per report (from the score
`evaluate.score_source` names), and the round's statistics, in one streaming pass (`round_statistics`).

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

from score.artifacts import (
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
from score.harness import Harness
from score.models import Backend
from score.pipeline import EvaluateStats
from score.rubrics import Rubric
from score.runner import StageContext
from score.stages.evaluate.evidence import check_citations, check_evidence
from score.stages.evaluate.judgements import judge_items
from score.stages.evaluate.probes import corrupt
from score.stages.evaluate.rubrics import write_rubrics
from score.stages.evaluate.statistics import groups_from_rows, reward_judgements, round_statistics
from score.workspace import Workspace


def run(ctx: StageContext) -> EvaluateStats:
    reports = ctx.read(REPORTS).to_pylist()
    t0 = time.perf_counter()
    judged = judge(ctx.ws, ctx.ws.backend(ctx.policy), reports, ctx.harness, ctx.seed, ctx.round)
    # 5. rewards and statistics, one query at a time (the same pass reads a written scores.parquet: stream_scores);
    # fed the judged rows, not the file, so rewards come from the float64 scores, not their float32 copies
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
    seconds = time.perf_counter() - t0
    for artifact, rows in [
        (RUBRICS, judged.rubric_rows),
        (EVIDENCE, judged.evidence_rows),
        (CITATIONS, judged.citation_rows),
        (PROBES, judged.probe_rows),
        (SCORES, judged.score_rows),
        (JUDGEMENT_SPANS, judged.judgement_rows),
        (SOLVER_REWARDS, stats.solver_rows),
        (EVALUATOR_REWARDS, stats.evaluator_rows),
        (DIMENSION_STATS, stats.dimension_rows),
        (SUMMARY, [stats.summary]),
    ]:
        ctx.write(artifact, rows)
    numbers = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.summary.items() if k != "round"}
    out = EvaluateStats(**numbers, seconds_per_report=round(seconds / max(len(reports), 1), 2))
    return out


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
    by_query: dict[str, list[dict]] = defaultdict(list)
    for r in reports:
        by_query[r["query_id"]].append(r)
    for group in by_query.values():
        group.sort(key=lambda r: r["sample_idx"])
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
        rw = ws.cfg.reward
        reward_judgements(list(rows), ev.passes, rw.discrimination_tau, ev.probe_dimensions, rw.unparsable_judgement)
    citation_rows = check_citations(ws, backend, reports, round_idx, seed) if citations else []  # 6.
    return Judged(by_query, rubrics, rubric_rows, evidence_rows, probe_rows, score_rows, judgement_rows, citation_rows)
