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
from itertools import groupby

from score.evaluator.base import Evaluation, Judged, group_by_query
from score.evaluator.evidence import check_citations, check_evidence
from score.evaluator.judgements import judge_items
from score.evaluator.probes import corrupt
from score.evaluator.rubrics import write_rubrics
from score.evaluator.statistics import reward_judgements

__all__ = ["Evaluation", "Judged", "evaluate_reports", "group_by_query"]  # what the stage and `score judge` use


def evaluate_reports(e: Evaluation, reports: list[dict]) -> Judged:
    """Rubrics, evidence checks, corruption probes and scores for `reports` (rows shaped like reports.parquet:
    query_id, query, sample_idx, trajectory_id, report, sources) under `e.harness`. Reports from outside a round
    (`e.outside`, `score judge`) are scored as they are: no probes, no sibling shown (a row's score must not
    depend on the other rows of its file), no citation checks (outside reports carry no sources)."""
    ev = e.ws.cfg.evaluate
    by_query = group_by_query(reports)
    rubrics, rubric_rows = write_rubrics(e, by_query)  # 1. J rubrics per query
    rng = random.Random(e.seed)  # 2. and 3. draw from one stream, in this order
    share = 0.0 if e.outside else ev.probe_share
    probe_rows, probes_of = corrupt(ev.probe_kinds, reports, rng, share, e.seed, e.round_idx)
    copies = [
        {**r, "report": text, "probe_kind": kind}
        for r in reports
        for tid, kind, text in probes_of[r["query_id"]]
        if tid == r["trajectory_id"]
    ]
    share = 0.0 if e.outside else ev.depth_probe_share
    evidence_rows, evidence_text = check_evidence(e, reports + copies, rng, share)
    judgement_rows, score_rows = judge_items(e, by_query, rubrics, probes_of, evidence_text)  # 4.
    for _, rows in groupby(judgement_rows, key=lambda j: j["query_id"]):  # 5a. the evaluator's reward per judgement
        reward_judgements(list(rows), ev.passes, e.ws.cfg.reward, ev.probe_dimensions)
    citation_rows = [] if e.outside else check_citations(e, reports)  # 6.
    return Judged(by_query, rubrics, rubric_rows, evidence_rows, probe_rows, score_rows, judgement_rows, citation_rows)
