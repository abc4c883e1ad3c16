"""self-evaluate, phase 2: `search_depth` claims per report searched (score.evidence) and judged Yes / No /
Unclear over the passages found, read off the answer-token probabilities after contextual calibration.

Corrupted copies get checks of their own (rows with `probe_kind`), so a copy is judged with its own evidence,
not its original's: a swapped entity can show up as an unsupported claim. Depth probes are drawn over the
reports only."""

from __future__ import annotations

import math
import random
from collections import defaultdict

from score.evidence import pick_claims, search_claim, verdict
from score.harness import Harness
from score.models import Backend
from score.prompts import evidence_messages
from score.workspace import Workspace


def check_evidence(
    ws: Workspace,
    backend: Backend,
    reports: list[dict],
    harness: Harness,
    rng: random.Random,
    depth_probe_share: float,
    round_idx: int,
) -> tuple[list[dict], dict[tuple[str, str], list[str]]]:
    """2. `search_depth` claims per report searched and judged Yes / No / Unclear (one level deeper on a share, for
    the depth rule): the evidence rows, and per (trajectory, probe kind) the lines shown to the evaluator when it
    scores. `reports` may hold corrupted copies (rows with a non-empty `probe_kind`, `report` the copy's text)."""
    ev, ctl = ws.cfg.evaluate, harness.controls
    originals = [r for r in reports if not r.get("probe_kind")]
    deeper_ids = {r["trajectory_id"] for r in originals if rng.random() < depth_probe_share}
    checks = []  # (report, deeper, claim_idx, ClaimSearch)
    for r in reports:
        titles = {s["n"]: s["title"] for s in r["sources"]}
        plans = [(False, ctl.search_depth, ctl.search_hops)]
        if r["trajectory_id"] in deeper_ids and not r.get("probe_kind"):  # the copies share their original's id
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
                "probe_kind": r.get("probe_kind", ""),
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
            line = f'- "{cs.claim[:160]}": {v.replace("_", " ")}{where}'
            text[(r["trajectory_id"], r.get("probe_kind", ""))].append(line)
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
