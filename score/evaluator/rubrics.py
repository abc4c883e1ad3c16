"""The evaluator, phase 1: J rubrics per query, sampled over the harness's active dimensions (candidates get a
default criterion and are scored in the shadow) and parsed robustly (score.rubrics)."""

from __future__ import annotations

from score.evaluator.base import Evaluation
from score.models import SamplingParams
from score.prompts import RUBRIC_PREFILL, rubric_messages
from score.rubrics import Rubric, parse_rubric
from score.store.schemas import span_row


def write_rubrics(e: Evaluation, by_query: dict[str, list[dict]]) -> tuple[dict[str, list[Rubric]], list[dict]]:
    """1. J rubrics per query, sampled over the active dimensions and parsed robustly."""
    backend, harness, round_idx = e.backend, e.harness, e.round_idx
    ev, ctl = e.ws.cfg.evaluate, harness.controls
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
        SamplingParams(n=ev.rubrics_per_query, temperature=ev.temperature, max_tokens=ev.rubric_tokens, seed=e.seed),
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
                    "span": span_row("rubric", prompt, s, ev.temperature),
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


def rubric_of_row(row: dict) -> Rubric:
    """A rubric back from its row of rubrics.parquet (a sharded stage's closing step; weights as stored, float32).

    >>> rub = rubric_of_row({"weights": [{"dimension": "insight", "weight": 1.0}], "status": "ok", "repairs": [],
    ...     "criteria": [{"dimension": "insight", "text": "Says why.", "shadow": False}],
    ...     "proposal_name": None, "proposal_description": None})
    >>> rub.weights, rub.criteria, rub.proposal
    ({'insight': 1.0}, {'insight': ['Says why.']}, None)
    """
    criteria: dict[str, list[str]] = {}
    for c in row["criteria"]:
        criteria.setdefault(c["dimension"], []).append(c["text"])
    proposal = (row["proposal_name"], row["proposal_description"]) if row["proposal_name"] is not None else None
    return Rubric(
        {w["dimension"]: w["weight"] for w in row["weights"]}, criteria, proposal, row["status"], list(row["repairs"])
    )
