"""The solver: K cited research reports per query, by `generate.agent` (the generate-reports stage, `score eval`
and the benchmarks all research through `research`).

react (the default, score.agent): a tool loop the model drives. It searches, reads a source whole, and decides when
to answer; each trajectory is stored as one span, `trajectory`: its prompt as the prefix (shared by the query's K
trajectories, encoded once by the trainer) and one token sequence of the model's turns and the tools' outputs, with a
mask (1 written, 0 tool output) and every written token's sampling log-prob; `turns` keeps each call and result
readable. Its sources are what it met, numbered in that order.

plan (the comparison): a plan span (the model lists sub-questions) -> one search call per sub-question -> a report
span written over the numbered passages found, citing them as [n]. Both spans are stored with their exact prompt,
token ids and log-probs at the sampling temperature. Every prompt is stored as the query's head (system and query,
the `prefix`, the same for all 2K spans of the query) and the span's own part: the trainer encodes the head once for
all of them (on the default this cut the solver's train-stage time by about 40%, docs/measurements-archive.md).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace

from score.agent import AgentTrajectory, Budget, run_agents
from score.checkpoints import Policy
from score.models import Backend, Sample, SamplingParams
from score.pipeline import GenerateStats
from score.prompts import cited_sources, parse_plan, plan_parts, report_parts
from score.queries import Query
from score.search.base import Passage
from score.store.schemas import span_row
from score.workspace import Workspace


@dataclass
class Trajectory:
    """One research trajectory before its report is written: the plan, the searches, the numbered sources."""

    query: int  # index into the queries
    k: int  # sample index within the query's group
    subquestions: list[str]
    fallback: bool  # no sub-question parsed: the query itself was searched
    searches: list[tuple[str, list[Passage]]]
    sources: list[tuple[int, Passage]]


@dataclass(frozen=True)
class _Research:
    """One research call: the workspace (config, search), the weights that write and their engine, seed, round."""

    ws: Workspace
    policy: Policy
    backend: Backend
    seed: int
    round_idx: int
    label: str  # what its progress lines call it ("round 3", "held-out round-0002")


def research(
    ws: Workspace,
    queries: list[Query],
    policy: Policy,
    seed: int,
    round_idx: int = 0,
    samples: int | None = None,
    label: str | None = None,
) -> tuple[list[dict], GenerateStats]:
    """The solver's trajectories for each query with the given weights (`samples` each, default K =
    generate.samples_per_query), by `generate.agent`: rows of reports.parquet, and stats.

    Parameters: what to research and with which weights, the sampling seed, the round (the rows' round and
    trajectory ids), trajectories per query, and what the progress lines call the call (default "round N")."""
    K = samples or ws.cfg.generate.samples_per_query
    r = _Research(ws, policy, ws.backend(policy), seed, round_idx, label or f"round {round_idx}")
    return _react(r, queries, K) if ws.cfg.generate.agent == "react" else _plan(r, queries, K)


def _react(r: _Research, queries: list[Query], K: int) -> tuple[list[dict], GenerateStats]:
    """The tool loop (score.agent): one row per trajectory, its one span the whole sequence with its mask."""
    ws, backend, seed = r.ws, r.backend, r.seed
    gen = ws.cfg.generate
    t0, tokens0 = time.perf_counter(), backend.usage.completion_tokens
    budget = Budget(
        gen.max_tool_calls,
        gen.report_tokens,
        gen.call_tokens,
        gen.max_context_tokens,
        gen.passages_per_search,
        gen.max_sources,
        gen.passage_chars,
        gen.read_chars,
    )
    params = SamplingParams(n=K, temperature=gen.temperature, seed=seed)
    groups = run_agents(backend, ws.search, [q.text for q in queries], budget, params, r.label)
    seconds = time.perf_counter() - t0
    rows = [_react_row(r, q, k, t) for q, group in zip(queries, groups) for k, t in enumerate(group)]
    flat = [t for group in groups for t in group]
    return rows, _react_stats(rows, flat, backend, tokens0, seconds)


def _react_row(r: _Research, q: Query, k: int, t: AgentTrajectory) -> dict:
    ws, round_idx, backend, gen = r.ws, r.round_idx, r.backend, r.ws.cfg.generate
    sample = Sample(backend.decode(t.ids), t.ids, t.logprobs, t.finish)  # type: ignore[arg-type]
    sources = t.numbered()
    return {
        "round": round_idx,
        "query_id": q.id,
        "query": q.text,
        "sample_idx": k,
        "trajectory_id": _trajectory_id(ws.cfg.seed, round_idx, q.id, k),
        "plan": [],
        "plan_fallback": False,
        **_research_columns(t.searches, sources, gen.passage_chars),
        "report": t.report,
        "cited": cited_sources(t.report, len(sources)),
        "finish_reason": t.finish,
        "spans": [span_row("trajectory", "", sample, gen.temperature, prefix=t.prompt, mask=t.mask)],
        "prompt_tokens": len(t.prompt_ids),
        "completion_tokens": sum(t.mask),
        "checkpoint": r.policy.name,
        "seed": r.seed,
        "agent": "react",
        "turns": [vars(turn) for turn in t.turns],
        "tool_calls": t.tool_calls,
        "answered": t.answered,
    }


def _react_stats(
    rows: list[dict], flat: list[AgentTrajectory], backend: Backend, tokens0: int, seconds: float
) -> GenerateStats:
    written = backend.usage.completion_tokens - tokens0
    answer_tokens = [len(backend.tokenize(t.report)) for t in flat if t.answered]
    return replace(
        row_stats(rows),
        completion_tokens=written,
        tokens_per_second=round(written / seconds, 2) if seconds else 0.0,
        mean_report_tokens=round(sum(answer_tokens) / max(len(answer_tokens), 1), 1),
    )


def row_stats(rows: list[dict]) -> GenerateStats:
    """What the rows of reports.parquet say by themselves (all but the token counts and rates)."""
    n = max(len(rows), 1)

    def mean(value) -> float:
        return round(sum(map(value, rows)) / n, 3)

    return GenerateStats(
        queries=len({r["query_id"] for r in rows}),
        reports=len(rows),
        truncated_share=mean(lambda r: r["finish_reason"] == "length"),
        citing_share=mean(lambda r: bool(r["cited"])),
        plan_fallback_share=mean(lambda r: r["plan_fallback"]),
        mean_tool_calls=mean(lambda r: r["tool_calls"]),
        multi_call_share=mean(lambda r: r["tool_calls"] >= 2),
        answer_rate=mean(lambda r: r["answered"]),
        cut_rate=mean(lambda r: r["finish_reason"] == "cut"),
        tool_errors=sum(bool(t["error"]) and t["error"] != "over_budget" for r in rows for t in r["turns"] or []),
        mean_turns=mean(lambda r: len(r["turns"] or [])),
    )


def _plan(r: _Research, queries: list[Query], K: int) -> tuple[list[dict], GenerateStats]:
    """The plan-and-execute template: a plan span, one search per sub-question, a report span."""
    ws, backend, seed = r.ws, r.backend, r.seed
    gen = ws.cfg.generate
    t0 = time.perf_counter()
    tokens0 = backend.usage.completion_tokens
    # every prompt is (query head, own part), sampled tokenized apart and stored so: the trainer packs a query's
    # plans and reports on one encoding of its head (the query is most of a plan prompt)
    plan_prompts = [plan_parts(backend.render, q.text, gen.subquestions) for q in queries]
    plans = backend.sample(  # (Q, K): the K samples of a query share its prompt's prefill
        [own for _, own in plan_prompts],
        SamplingParams(n=K, temperature=gen.temperature, max_tokens=gen.plan_tokens, seed=seed),
        desc=f"{r.label} plans",
        prefix=[head for head, _ in plan_prompts],
    )
    trajectories = [
        _search(ws, q, qi, k, plan.text)
        for qi, (q, group) in enumerate(zip(queries, plans))
        for k, plan in enumerate(group)
    ]
    report_prompts = [
        report_parts(backend.render, queries[t.query].text, t.sources, gen.passage_chars) for t in trajectories
    ]
    reports = backend.sample(
        [own for _, own in report_prompts],
        SamplingParams(n=1, temperature=gen.temperature, max_tokens=gen.report_tokens, seed=seed + 1),
        desc=f"{r.label} reports",
        prefix=[head for head, _ in report_prompts],
    )
    seconds = time.perf_counter() - t0
    rows = [
        _row(
            r,
            queries[t.query],
            t,
            [
                span_row("plan", plan_prompts[t.query][1], plans[t.query][t.k], gen.temperature, query_head),
                span_row("report", own, report, gen.temperature, query_head),
            ],
            plans[t.query][t.k],
            report,
        )
        for t, (query_head, own), [report] in zip(trajectories, report_prompts, reports)
    ]
    return rows, _stats(rows, [r[0] for r in reports], backend, tokens0, seconds)


def _search(ws: Workspace, q: Query, qi: int, k: int, plan: str) -> Trajectory:
    """One search call per parsed sub-question (the query itself when none parsed), sources numbered."""
    gen = ws.cfg.generate
    subqs = parse_plan(plan, gen.subquestions)
    fallback = not subqs
    hits = ws.search.search_many(subqs or [q.text], gen.passages_per_search)
    sources = _number_sources(hits, gen.max_sources)
    if not sources and not fallback:  # sub-questions found nothing: search the query itself
        hits.append(ws.search.search(q.text, gen.passages_per_search))
        subqs.append(q.text)
        sources = _number_sources(hits, gen.max_sources)
    return Trajectory(qi, k, subqs, fallback, list(zip(subqs or [q.text], hits)), sources)


def _row(r: _Research, q: Query, t: Trajectory, spans: list[dict], plan: Sample, report: Sample) -> dict:
    ws, round_idx, gen = r.ws, r.round_idx, r.ws.cfg.generate
    return {
        "round": round_idx,
        "query_id": q.id,
        "query": q.text,
        "sample_idx": t.k,
        "trajectory_id": _trajectory_id(ws.cfg.seed, round_idx, q.id, t.k),
        "plan": t.subquestions or [q.text],
        "plan_fallback": t.fallback,
        **_research_columns(t.searches, t.sources, gen.passage_chars),
        "report": report.text,
        "cited": cited_sources(report.text, len(t.sources)),
        "finish_reason": report.finish_reason,
        "spans": spans,
        "prompt_tokens": plan.prompt_tokens + report.prompt_tokens,
        "completion_tokens": len(plan.token_ids) + len(report.token_ids),
        "checkpoint": r.policy.name,
        "seed": r.seed,
        "agent": "plan",
        "turns": None,
        "tool_calls": len(t.searches),
        "answered": True,
    }


def _research_columns(
    searches: list[tuple[str, list[Passage]]], sources: list[tuple[int, Passage]], passage_chars: int
) -> dict:
    """The reports.parquet columns of what a trajectory searched and the numbered sources it may cite."""
    return {
        "searches": [
            {"query": sq, "passage_ids": [p.id for p in hit], "scores": [p.score for p in hit]} for sq, hit in searches
        ],
        "sources": [
            {"n": n, "passage_id": p.id, "title": p.title, "url": p.source, "text": p.text[:passage_chars]}
            for n, p in sources
        ],
    }


def _stats(rows: list[dict], reports: list[Sample], backend: Backend, tokens0: int, seconds: float) -> GenerateStats:
    written = backend.usage.completion_tokens - tokens0
    return replace(
        row_stats(rows),
        completion_tokens=written,
        tokens_per_second=round(written / seconds, 2) if seconds else 0.0,
        mean_report_tokens=round(sum(len(r.token_ids) for r in reports) / max(len(reports), 1), 1),
    )


def _number_sources(hits: list[list[Passage]], limit: int) -> list[tuple[int, Passage]]:
    """Distinct passages in search order, numbered from 1, at most `limit`."""
    seen: dict[str, Passage] = {}
    for hit in hits:
        for p in hit:
            if p.id not in seen and len(seen) < limit:
                seen[p.id] = p
    return list(enumerate(seen.values(), start=1))


def _trajectory_id(seed: int, round_idx: int, query_id: str, k: int) -> str:
    """Unique within a run; free of the run's name, so two runs on one seed (the arms of `score ablate`) give the
    same trajectory the same id, and the evaluator's sampling seeds (derived from it) pair the arms."""
    return hashlib.sha256(f"{seed}/{round_idx}/{query_id}/{k}".encode()).hexdigest()[:16]
