"""The evaluator, phase 4: the evaluator writes a score for every item (report or corrupted copy) on every
distinct criterion of its query's rubrics, in `evaluate.passes` passes. A judgement is an action: its score
tokens are sampled from the model at `evaluate.judge_temperature` and stored as a span (the exact prefix and
prompt, the token ids, their log-probs under the distribution they came from), so the train stage can train
on it. The read-off (the expectation over the score-token probabilities at the same place, `score.scale`) is
recorded beside it; `evaluate.score_source` says which of the two feeds the solver's reward.

What differs between passes, and why: pass p shows the judged report beside a different sibling report of the
same query (the p-th other report in turn; a comparison point that can move a judgement, as a human grader's
would move) and its evidence-check lines rotated by p, and samples with its own seed. Everything else (query,
report, criterion wording) is the same, so disagreement between passes is the evaluator's, not the prompt's.
Each pass's prefix (query, report, sibling, evidence) is encoded once for all its criteria.

With `evaluate.rationale_tokens` > 0 the evaluator first writes a short reasoning per criterion (sampled at the
same temperature, stored as `rationale_span`, trained with its score's reward), and writes its score after it.

A score is drawn from the distribution restricted to the eleven outcomes (`Backend.write_scores`; the first
token from the candidates, after a written "1" one of "0" and the newline), so every judgement writes a score;
the restricted 11-way distribution is stored beside it (`distribution`): pair credit takes expectations over it.
Faults: a judgement that wrote no score in 0-10 (an artifact from before restricted answers) is unparsable:
counted (`unparsable_rate`), its `written` is null, it earns the evaluator's lowest reward, and with
`score_source: written` its cell uses its read-off.
A report longer than `evaluate.report_chars` (when set) is cut and `report_cut` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from score.evaluator.base import Evaluation
from score.models import Backend, Sample, SamplingParams
from score.pipeline import derive_seed
from score.progress import progress_bar
from score.prompts import SCORE_AFTER_RATIONALE, JudgingView, judging_parts
from score.rubrics import Rubric
from score.scale import parse_score, read_off, restricted_distribution
from score.store.schemas import span_row
from score.workspace import Workspace


@dataclass
class Item:
    """One thing judged: a report, or a corrupted copy of one (`kind` names the corruption)."""

    query_id: str
    query: str
    trajectory_id: str
    kind: str  # "" for the report itself
    text: str


def judge_items(
    e: Evaluation,
    by_query: dict[str, list[dict]],
    rubrics: dict[str, list[Rubric]],
    probes_of: dict[str, list[tuple[str, str, str]]],
    evidence_text: dict[tuple[str, str], list[str]],
) -> tuple[list[dict], list[dict]]:
    """4. every item x every distinct criterion x m passes: the judgement rows (one per written score) and the
    score rows (one per rubric holding the criterion). Outside a round no sibling report is shown."""
    judgements: list[dict] = []
    scores: list[dict] = []
    n_items = sum(len(g) + len(probes_of[q]) for q, g in by_query.items())
    with progress_bar(total=n_items, desc=f"round {e.round_idx} judging", unit="report", leave=False) as bar:
        for q, group in by_query.items():
            items = [Item(q, r["query"], r["trajectory_id"], "", r["report"]) for r in group]
            items += [Item(q, group[0]["query"], tid, kind, text) for tid, kind, text in probes_of[q]]
            criteria = list(dict.fromkeys((d, c) for rub in rubrics[q] for d, cs in rub.criteria.items() for c in cs))
            for item in items:
                for p in range(e.ws.cfg.evaluate.passes):
                    shown = _Shown(
                        _sibling([] if e.outside else group, item.trajectory_id, p),
                        _rotated(evidence_text.get((item.trajectory_id, item.kind), []), p),
                    )
                    rows = _judge_pass(e, item, p, criteria, shown)
                    for row in rows:
                        scores += _score_rows(e.ws, row, rubrics[q])
                    judgements += rows
                bar.update(1)
    return judgements, scores


@dataclass(frozen=True)
class _Shown:
    """What a pass shows beside the judged item: a sibling report (or none) and the evidence lines, in its order."""

    sibling: dict | None
    evidence: list[str]


def _rotated(lines: list[str], p: int) -> list[str]:
    """The evidence lines pass p shows: rotated by p, so the passes differ in order."""
    return lines[p % len(lines) :] + lines[: p % len(lines)] if lines else []


def _judge_pass(e: Evaluation, item: Item, p: int, criteria: list[tuple[str, str]], shown: _Shown) -> list[dict]:
    """One item in pass p on every criterion: one judgement row per criterion."""
    ev, backend, tokens, sibling = e.ws.cfg.evaluate, e.backend, e.score_tokens, shown.sibling
    report = item.text if ev.report_chars is None else item.text[: ev.report_chars]
    view = JudgingView(
        item.query,
        report,
        sibling["report"][: ev.sibling_chars] if sibling and ev.sibling_chars else "",
        "\n".join(shown.evidence) or "(no claim checked)",
    )
    prefix, suffixes = judging_parts(
        backend.render, view, criteria, e.harness.controls.strictness, rationale=ev.rationale_tokens > 0
    )
    params = SamplingParams(temperature=ev.judge_temperature, seed=_seed(e.seed, p, item))
    rationales = _rationales(backend, prefix, suffixes, ev.rationale_tokens, params)
    asks = [s + r.text + SCORE_AFTER_RATIONALE if r else s for s, r in zip(suffixes, rationales)]
    written = backend.write_scores(prefix, asks, tokens, params)
    rows = []
    for (dim, crit), suffix, ask, rationale, w in zip(criteria, suffixes, asks, rationales, written):
        text = backend.decode(w.token_ids)
        sample = Sample(text, w.token_ids, w.logprobs, "stop", choices=w.choices)
        rows.append(
            {
                "round": e.round_idx,
                "query_id": item.query_id,
                "trajectory_id": item.trajectory_id,
                "probe_kind": item.kind,
                "pass_idx": p,
                "dimension": dim,
                "criterion": crit,
                "sibling_id": sibling["trajectory_id"] if sibling and ev.sibling_chars else "",
                "report_cut": len(report) < len(item.text),
                "span": span_row("judgement", ask, sample, ev.judge_temperature, prefix=prefix),
                "rationale_span": (
                    span_row("rationale", suffix, rationale, ev.judge_temperature, prefix=prefix) if rationale else None
                ),
                "written": parse_score(text),
                "expected": read_off(tokens, w.first, w.after_then)[0],
                "distribution": restricted_distribution(tokens, w.first, w.second, ev.judge_temperature).tolist(),
                "reward_kind": "",
                "reward": None,
            }
        )
    return rows


def _rationales(
    backend: Backend, prefix: str, suffixes: list[str], max_tokens: int, params: SamplingParams
) -> list[Sample | None]:
    """Per criterion, the short reasoning the evaluator writes before its score (none with max_tokens 0)."""
    if not max_tokens:
        return [None] * len(suffixes)
    reasoning = SamplingParams(temperature=params.temperature, max_tokens=max_tokens, seed=params.seed)
    return [s[0] for s in backend.sample(suffixes, reasoning, prefix=prefix)]


def _seed(seed: int, p: int, item: Item) -> int:
    """Pass p's sampling seed for one item: stable across runs and processes."""
    return derive_seed(seed, p, f"{item.query_id}/{item.trajectory_id}/{item.kind}")


def _sibling(group: list[dict], trajectory_id: str, p: int) -> dict | None:
    """The sibling report shown in pass p: the query's other reports in turn, starting after the judged one's
    place, so each pass shows another one while there are enough (K >= m + 1)."""
    others = [r for r in group if r["trajectory_id"] != trajectory_id]
    if not others:
        return None
    start = next((k for k, r in enumerate(group) if r["trajectory_id"] == trajectory_id), 0)
    return others[(start + p) % len(others)]


def _score_rows(ws: Workspace, j: dict, rubrics: list[Rubric]) -> list[dict]:
    """A judgement as the solver's reward reads it: one score row per rubric holding its criterion, the score
    taken from `evaluate.score_source` (an unparsable written score falls back to its read-off)."""
    source = ws.cfg.evaluate.score_source
    if source == "written" and j["written"] is None:
        source = "expected (unparsable)"
    used = j["written"] if source == "written" else j["expected"]
    return [
        {
            "round": j["round"],
            "query_id": j["query_id"],
            "rubric_idx": k,
            "pass_idx": j["pass_idx"],
            "trajectory_id": j["trajectory_id"],
            "probe_kind": j["probe_kind"],
            "dimension": j["dimension"],
            "criterion": j["criterion"],
            "shadow": j["dimension"] not in rub.weights,
            "expected": j["expected"],
            "written": j["written"],
            "score": used,
            "score_source": source,
        }
        for k, rub in enumerate(rubrics)
        if j["criterion"] in rub.criteria.get(j["dimension"], [])
    ]
