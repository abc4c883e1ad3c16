"""The evaluator: the same weights as the solver, judging reports (the self-evaluate stage and `score judge`
both evaluate through `evaluate_reports`).

Per query: J rubrics sampled from the model over the harness's active dimensions (candidates get a default
criterion and are judged in the shadow); corrupted copies of a `probe_share` of the reports; evidence checks
on `search_depth` claims per report and per copy (the evaluator writes a verdict on each claim and on its
anchor, the claim with an entity swapped: sampled, trained); then judgements: for every item (report or copy), every
distinct criterion and each of `evaluate.passes` passes, the evaluator writes a score (sampled, stored as a
trainable span; passes differ by the sibling report shown and the evidence order). Then the rewards: the
evaluator's per judgement (two-sided pair credit on original/copy pairs, gated consistency) and per rubric,
the solver's per report (from the score `evaluate.score_source` names), and the round's statistics, in one
streaming pass (`round_statistics`).

One module per phase: `rubrics.py` (1. J rubrics per query; the rubric format itself is `score.rubrics`),
`probes.py` (2. corrupted copies), `evidence.py` (3. claims checked against passages; which claims and what is
searched for them: `claims.py`), `judgements.py` (4. every item on every criterion, per pass), `statistics.py`
(5. rewards and the round's statistics, streaming). `evaluate_reports` runs phases 1-4 in order; the
self-evaluate stage (`score/stages/evaluate.py`, its contract `score.pipeline.EVALUATE`) runs phase 5.
With `evaluate.rationale_tokens` > 0 a short reasoning is written (and trained) before every score; the CPU
default writes the score alone (a rationale is a sampled span per judgement).

Deliberately left out: which claims are checked (`claims.pick_claims`: cited sentences first) and what is
searched for them (`claims.search_claim`) are still chosen by code, not written by the evaluator.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from itertools import groupby

from score.evaluator.evidence import check_citations, check_evidence
from score.evaluator.judgements import judge_items
from score.evaluator.probes import corrupt
from score.evaluator.rubrics import write_rubrics
from score.evaluator.statistics import reward_judgements
from score.harness import Harness
from score.models import Backend
from score.rubrics import Rubric
from score.store.schemas import CITATIONS, EVIDENCE, JUDGEMENT_SPANS, PROBES, RUBRICS, SCORES, Artifact
from score.workspace import Workspace


def group_by_query(reports: list[dict]) -> dict[str, list[dict]]:
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


def evaluate_reports(
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
    by_query = group_by_query(reports)
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
