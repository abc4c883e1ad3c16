"""self-evaluate, phase 4: every item (report or probe copy) on every distinct criterion of its query's
rubrics, in two passes that differ by the place the report stands in the pass's order. The score is read off
the digit-token probabilities (score.scale) over a prefix shared by all criteria of both passes."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from score.harness import Harness
from score.models import Backend
from score.prompts import scoring_parts
from score.rubrics import Rubric
from score.runner import derive_seed
from score.scale import digit_ids, expected_score, strict_curve
from score.stages.evaluate.statistics import PASSES
from score.workspace import Workspace


def score_items(
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
