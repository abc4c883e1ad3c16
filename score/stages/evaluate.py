"""self-evaluate: the evaluator role (the same weights as the solver) judges the round's reports.

Per query: J rubrics sampled from the model over the harness's active dimensions (candidates get a
default criterion and are scored in the shadow); evidence checks on `search_depth` claims per report;
every report, and corrupted copies of a `probe_share` of them, scored on every criterion of every rubric
in two passes with a different report order and seed (the report is encoded once and shared by both
passes; a pass differs by the place its order gives the report, stated after the report). Scores are read
off the model's score-token probabilities (one forward per criterion, over a shared encoding of query +
report + evidence; `score.scale`), not parsed from generated text: a 135M model answers "10" to nearly
everything when asked to write a score. Then the rewards: solver per report, evaluator per rubric, and the
round's statistics, in one streaming pass (`round_statistics`).

Its contract (what it reads, writes and may configure) is `score.pipeline.EVALUATE`.

Deliberately left out: free-text justifications (costly, and no reward reads them) and pairwise
comparisons between reports (each report is scored alone; the order label is what differs by pass).

Run alone: `score stage self-evaluate --round 0 [--force]` (needs the round's generate-reports).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from score.artifacts import (
    DIMENSION_STATS,
    EVALUATOR_REWARDS,
    EVIDENCE,
    PROBES,
    REPORTS,
    RUBRICS,
    SCORES,
    SOLVER_REWARDS,
    SUMMARY,
)
from score.corrupt import CORRUPTIONS
from score.evidence import pick_claims, search_claim, verdict
from score.harness import Harness
from score.models import Backend, SamplingParams
from score.pipeline import EVALUATE, EvaluateStats
from score.prompts import RUBRIC_PREFILL, evidence_messages, rubric_messages, scoring_parts
from score.rubrics import Rubric, parse_rubric
from score.runner import StageContext, derive_seed
from score.scale import digit_ids, expected_score, strict_curve
from score.statistics import PASSES, groups_from_rows, round_statistics
from score.workspace import Workspace

log = logging.getLogger(__name__)


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
    )
    seconds = time.perf_counter() - t0
    for artifact, rows in [
        (RUBRICS, judged.rubric_rows),
        (EVIDENCE, judged.evidence_rows),
        (PROBES, judged.probe_rows),
        (SCORES, judged.score_rows),
        (SOLVER_REWARDS, stats.solver_rows),
        (EVALUATOR_REWARDS, stats.evaluator_rows),
        (DIMENSION_STATS, stats.dimension_rows),
        (SUMMARY, [stats.summary]),
    ]:
        ctx.write(artifact, rows)
    numbers = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.summary.items() if k != "round"}
    out = EvaluateStats(**numbers, seconds_per_report=round(seconds / max(len(reports), 1), 2))
    log.info("round %d %s: %s", ctx.round, EVALUATE.name, asdict(out))
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


def judge(
    ws: Workspace,
    backend: Backend,
    reports: list[dict],
    harness: Harness,
    seed: int,
    round_idx: int = 0,
    probe_share: float | None = None,
    depth_probe_share: float | None = None,
) -> Judged:
    """Rubrics, evidence checks, corruption probes and scores for `reports` (rows shaped like reports.parquet:
    query_id, query, sample_idx, trajectory_id, report, sources) under `harness`. Probe shares default to the
    config's; `score judge` sets them to 0 to score outside reports as they are."""
    ev = ws.cfg.evaluate
    by_query: dict[str, list[dict]] = defaultdict(list)
    for r in reports:
        by_query[r["query_id"]].append(r)
    for group in by_query.values():
        group.sort(key=lambda r: r["sample_idx"])
    rubrics, rubric_rows = _write_rubrics(ws, backend, by_query, harness, seed, round_idx)  # 1. J rubrics per query
    rng = random.Random(seed)  # 2. and 3. draw from one stream, in this order
    share = ev.depth_probe_share if depth_probe_share is None else depth_probe_share
    evidence_rows, evidence_text = _check_evidence(ws, backend, reports, harness, rng, share, round_idx)
    share = ev.probe_share if probe_share is None else probe_share
    probe_rows, probes_of = _corrupt(ev.probe_kinds, reports, rng, share, seed, round_idx)
    score_rows = _score(ws, backend, by_query, rubrics, probes_of, evidence_text, harness, seed, round_idx)  # 4.
    return Judged(by_query, rubrics, rubric_rows, evidence_rows, probe_rows, score_rows)


def _write_rubrics(
    ws: Workspace, backend: Backend, by_query: dict[str, list[dict]], harness: Harness, seed: int, round_idx: int
) -> tuple[dict[str, list[Rubric]], list[dict]]:
    """1. J rubrics per query, sampled over the active dimensions and parsed robustly."""
    ev, ctl = ws.cfg.evaluate, harness.controls
    active = [(d.id, d.description) for d in harness.active]
    shadow = [(d.id, d.description) for d in harness.candidates]
    queries = list(by_query)
    prompts = [
        backend.render(
            rubric_messages(by_query[q][0]["query"], active, ctl.criteria_per_dimension), continue_final=True
        )
        for q in queries
    ]
    samples = backend.sample(
        prompts,
        SamplingParams(
            n=ctl.rubrics_per_query, temperature=ev.temperature, top_p=ev.top_p, max_tokens=ev.rubric_tokens, seed=seed
        ),
        desc=f"round {round_idx} rubrics",
    )
    rubrics: dict[str, list[Rubric]] = {}
    rows = []
    for q, prompt, group in zip(queries, prompts, samples):
        rubrics[q] = []
        for j, s in enumerate(group):
            rub = parse_rubric(
                RUBRIC_PREFILL + s.text, active, shadow, by_query[q][0]["query"], ctl.criteria_per_dimension
            )
            rubrics[q].append(rub)
            rows.append(
                {
                    "round": round_idx,
                    "query_id": q,
                    "rubric_idx": j,
                    "harness_version": harness.version,
                    "span": {
                        "name": "rubric",
                        "prompt": prompt,
                        "text": s.text,
                        "token_ids": s.token_ids,
                        "logprobs": s.logprobs,
                        "finish_reason": s.finish_reason,
                    },
                    "status": rub.status,
                    "repairs": rub.repairs,
                    "weights": [{"dimension": d, "weight": w} for d, w in rub.weights.items()],
                    "criteria": [
                        {"dimension": d, "text": c, "shadow": d not in rub.weights}
                        for d, cs in rub.criteria.items()
                        for c in cs
                    ],
                    "proposal_name": rub.proposal[0] if rub.proposal else None,
                    "proposal_description": rub.proposal[1] if rub.proposal else None,
                }
            )
    return rubrics, rows


def _check_evidence(
    ws: Workspace,
    backend: Backend,
    reports: list[dict],
    harness: Harness,
    rng: random.Random,
    depth_probe_share: float,
    round_idx: int,
) -> tuple[list[dict], dict[str, list[str]]]:
    """2. `search_depth` claims per report searched and judged Yes / No / Unclear (one level deeper on a share, for
    the depth rule): the evidence rows, and per report the lines shown to the evaluator when it scores."""
    ev, ctl = ws.cfg.evaluate, harness.controls
    deeper_ids = {r["trajectory_id"] for r in reports if rng.random() < depth_probe_share}
    checks = []  # (report, deeper, claim_idx, ClaimSearch)
    for r in reports:
        titles = {s["n"]: s["title"] for s in r["sources"]}
        plans = [(False, ctl.search_depth, ctl.search_hops)]
        if r["trajectory_id"] in deeper_ids:
            plans.append((True, ctl.search_depth + 1, ctl.search_hops + 1))
        for deeper, depth, hops in plans:
            for i, (claim, cited) in enumerate(pick_claims(r["report"], depth, ev.claim_min_chars)):
                checks.append((r, deeper, i, search_claim(ws.search, claim, cited, titles, r["query"], hops)))
    answer = _answers(backend, [c[3] for c in checks], ev.passage_chars)
    rows, text = [], defaultdict(list)
    for idx, (r, deeper, i, cs) in enumerate(checks):
        p = answer.get(idx, (0.0, 0.0, 1.0))
        v = verdict(*p, found=bool(cs.passages))
        rows.append(
            {
                "round": round_idx,
                "query_id": r["query_id"],
                "trajectory_id": r["trajectory_id"],
                "deeper": deeper,
                "claim_idx": i,
                "claim": cs.claim,
                "cited": cs.cited,
                "queries": cs.queries,
                "passage_ids": [x.id for x in cs.passages],
                "p_yes": p[0],
                "p_no": p[1],
                "p_unclear": p[2],
                "verdict": v,
            }
        )
        if not deeper:
            where = f" ({cs.passages[0].title})" if cs.passages else ""
            text[r["trajectory_id"]].append(f'- "{cs.claim[:160]}": {v.replace("_", " ")}{where}')
    return rows, text


def _answers(backend: Backend, searches: list, passage_chars: int) -> dict[int, tuple[float, ...]]:
    """Check index -> calibrated (p_yes, p_no, p_unclear), for the checks whose search found a passage (a claim
    with none is not_found without asking)."""
    answer_ids = [backend.tokenize(" Yes")[0], backend.tokenize(" No")[0], backend.tokenize(" Un")[0]]
    found = [i for i, cs in enumerate(searches) if cs.passages]
    judged = backend.choice_logprobs(
        [
            backend.render(
                evidence_messages(searches[i].claim, [(p.title, p.text[:passage_chars]) for p in searches[i].passages])
            )
            + "Answer:"
            for i in found
        ],
        answer_ids,
    )
    # Contextual calibration (Zhao et al., 2021): a small judge says "No" to almost everything (measured here:
    # p(No) ~ 0.8 on every claim), so divide by its answer to a content-free check before taking the argmax.
    prior = _softmax(
        backend.choice_logprobs([backend.render(evidence_messages("N/A", [("N/A", "N/A")])) + "Answer:"], answer_ids)[0]
    )
    return dict(zip(found, (_calibrate(_softmax(lp), prior) for lp in judged)))


def _corrupt(
    kinds: list[str], reports: list[dict], rng: random.Random, probe_share: float, seed: int, round_idx: int
) -> tuple[list[dict], dict[str, list[tuple[str, str, str]]]]:
    """3. corrupted copies of a share of the reports, kinds in turn: the probe rows, and per query the copies
    that changed (trajectory_id, kind, text)."""
    rows, probes_of = [], defaultdict(list)
    chosen = [r for r in reports if rng.random() < probe_share]
    for k, r in enumerate(chosen):
        kind = kinds[k % len(kinds)]
        text = CORRUPTIONS[kind](r["report"], seed + k)
        changed = text != r["report"]
        rows.append(
            {
                "round": round_idx,
                "query_id": r["query_id"],
                "trajectory_id": r["trajectory_id"],
                "kind": kind,
                "changed": changed,
                "text": text,
            }
        )
        if changed:
            probes_of[r["query_id"]].append((r["trajectory_id"], kind, text))
    return rows, probes_of


def _score(
    ws: Workspace,
    backend: Backend,
    by_query: dict[str, list[dict]],
    rubrics: dict[str, list[Rubric]],
    probes_of: dict[str, list[tuple[str, str, str]]],
    evidence_text: dict[str, list[str]],
    harness: Harness,
    seed: int,
    round_idx: int,
) -> list[dict]:
    """4. every item (report or probe copy) x every distinct criterion x 2 passes."""
    digits = digit_ids(backend.tokenize)
    rows: list[dict] = []
    n_items = sum(len(g) + len(probes_of[q]) for q, g in by_query.items())
    with tqdm(total=n_items, desc=f"round {round_idx} scoring", unit="report", leave=False) as bar:
        for q, group in by_query.items():
            items = [(r["trajectory_id"], "", r["report"]) for r in group] + probes_of[q]
            criteria = list(dict.fromkeys((d, c) for rub in rubrics[q] for d, cs in rub.criteria.items() for c in cs))
            positions = {}  # (pass, item) -> 1-based place in that pass's order
            for pass_idx in PASSES:
                order = list(range(len(items)))
                random.Random(derive_seed(seed, pass_idx, q)).shuffle(
                    order
                )  # each pass its own order, stable across runs
                positions.update({(pass_idx, i): place for place, i in enumerate(order, start=1)})
            pass_rngs = [np.random.default_rng(derive_seed(seed, p, q)) for p in PASSES]
            for i, (tid, kind, text) in enumerate(items):
                item = _Item(q, group[0]["query"], tid, kind, text, [positions[(p, i)] for p in PASSES], len(items))
                rows += _score_item(
                    ws, backend, item, criteria, rubrics[q], evidence_text[tid], digits, pass_rngs, harness, round_idx
                )
                bar.update(1)
    return rows


@dataclass
class _Item:
    query_id: str
    query: str
    trajectory_id: str
    kind: str  # "" for the report itself, else the corruption of the copy
    text: str
    places: list[int]  # its 1-based place in each pass's order
    total: int  # items of the query


def _score_item(
    ws: Workspace,
    backend: Backend,
    item: _Item,
    criteria: list[tuple[str, str]],
    rubrics: list[Rubric],
    evidence: list[str],
    digits: list[int],
    pass_rngs: list[np.random.Generator],
    harness: Harness,
    round_idx: int,
) -> list[dict]:
    """One item on every criterion in both passes: one score row per rubric holding the criterion."""
    ev, ctl = ws.cfg.evaluate, harness.controls
    prefix, per_pass = scoring_parts(
        backend.render,
        item.query,
        item.text[: ev.report_chars],
        item.places,
        item.total,
        "\n".join(evidence) or "(no claim checked)",
        criteria,
        ctl.strictness,
    )
    # both passes in one call: the report is encoded once, each pass only adds its short suffixes
    first, after_one = backend.next_token_logprobs(prefix, per_pass[0] + per_pass[1], digits, then=digits[1])
    rows = []
    for pass_idx in PASSES:
        span = slice(pass_idx * len(criteria), (pass_idx + 1) * len(criteria))
        for (dim, crit), lp, lp1 in zip(criteria, first[span], after_one[span]):
            expected, dist = expected_score(lp, lp1)
            drawn = int(pass_rngs[pass_idx].choice(11, p=dist))
            used = strict_curve(expected if ev.score_mode == "expected" else float(drawn), ctl.strictness)
            for j, rub in enumerate(rubrics):
                if crit in rub.criteria.get(dim, []):
                    rows.append(
                        {
                            "round": round_idx,
                            "query_id": item.query_id,
                            "rubric_idx": j,
                            "pass_idx": pass_idx,
                            "trajectory_id": item.trajectory_id,
                            "probe_kind": item.kind,
                            "position": item.places[pass_idx],
                            "dimension": dim,
                            "criterion": crit,
                            "shadow": dim not in rub.weights,
                            "expected": expected,
                            "sampled": drawn,
                            "sampled_logprob": math.log(max(dist[drawn], 1e-12)),
                            "score": used,
                            "score_path": ev.score_mode,
                        }
                    )
    return rows


def _softmax(lps: list[float]) -> tuple[float, ...]:
    m = max(lps)
    e = [math.exp(x - m) for x in lps]
    return tuple(x / sum(e) for x in e)


def _calibrate(p: tuple[float, ...], prior: tuple[float, ...]) -> tuple[float, ...]:
    """Divide answer probabilities by the content-free prior and renormalise.

    >>> [round(x, 2) for x in _calibrate((0.2, 0.8, 0.0), (0.1, 0.9, 0.0))]
    [0.69, 0.31, 0.0]
    """
    q = [x / max(y, 1e-9) for x, y in zip(p, prior)]
    return tuple(x / sum(q) for x in q)
