"""generate-reports: the solver role writes K cited research reports per query.

Each trajectory is: a plan span (the model lists sub-questions) -> one search call per sub-question ->
a report span written over the numbered passages found, citing them as [n]. Both spans are stored with
their exact prompt, token ids and temperature-1 log-probs: they are the solver's trainable tokens.
Search results enter the report prompt as context and carry no loss.

Deliberately left out: multi-hop search loops driven by the model (one plan, one round of searches),
and reading full documents (passages are corpus summaries cut to `generate.passage_chars`).

Run alone: `score stage generate-reports --round 0 [--force]`.
"""

from __future__ import annotations

import hashlib
import logging
import time

import pyarrow as pa

from score.artifacts import REPORTS_SCHEMA
from score.models import SamplingParams
from score.prompts import cited_sources, parse_plan, plan_messages, report_messages
from score.queries import Query, round_queries
from score.stages.base import StageResult, derive_seed, policy_for_round
from score.search.base import Passage
from score.workspace import Policy, Workspace

log = logging.getLogger(__name__)

NAME = "generate-reports"
FOLDER = "generate"
CONFIG = ("seed", "model", "search", "data", "generate")  # what the outputs depend on


def inputs(ws: Workspace, round_idx: int) -> dict[str, str]:
    return {
        "queries": ws.queries_fingerprint,
        "corpus": ws.search.fingerprint,
        "policy": policy_for_round(ws, round_idx).fingerprint,
    }


def run(ws: Workspace, round_idx: int, folder: str) -> StageResult:
    queries = round_queries(ws.queries, ws.cfg.data.queries_per_round, round_idx, ws.cfg.seed)
    rows, stats = research(ws, queries, policy_for_round(ws, round_idx), derive_seed(ws.cfg.seed, round_idx, NAME), round_idx)
    info = ws.store.write_table(folder, "reports.parquet", pa.Table.from_pylist(rows, schema=REPORTS_SCHEMA))
    log.info("round %d generate-reports: %s", round_idx, stats)
    return StageResult(files={"reports.parquet": info}, stats=stats)


def research(
    ws: Workspace, queries: list[Query], policy: Policy, seed: int, round_idx: int = 0, samples: int | None = None
) -> tuple[list[dict], dict]:
    """The solver's trajectories for each query with the given weights (`samples` each, default K =
    generate.samples_per_query): rows of reports.parquet, and stats."""
    cfg, gen = ws.cfg, ws.cfg.generate
    backend = ws.backend(policy)
    K = samples or gen.samples_per_query
    t0 = time.perf_counter()
    tokens0 = backend.usage.completion_tokens

    plan_prompts = [backend.render(plan_messages(q.text, gen.subquestions)) for q in queries]
    plans = backend.sample(  # (Q, K): the K samples of a query share its prompt's prefill
        plan_prompts,
        SamplingParams(n=K, temperature=gen.temperature, top_p=gen.top_p, max_tokens=gen.plan_tokens, seed=seed),
        desc=f"round {round_idx} plans",
    )

    trajectories = []  # (query index, k, subquestions, fallback, searches, sources)
    for qi, (q, samples) in enumerate(zip(queries, plans)):
        for k, plan in enumerate(samples):
            subqs = parse_plan(plan.text, gen.subquestions)
            fallback = not subqs
            hits = ws.search.search_many(subqs or [q.text], gen.passages_per_search)
            sources = _number_sources(hits, gen.max_sources)
            if not sources and not fallback:  # sub-questions found nothing: search the query itself
                hits.append(ws.search.search(q.text, gen.passages_per_search))
                subqs.append(q.text)
                sources = _number_sources(hits, gen.max_sources)
            trajectories.append((qi, k, subqs, fallback, list(zip(subqs or [q.text], hits)), sources))

    report_prompts = [backend.render(report_messages(queries[qi].text, src, gen.passage_chars)) for qi, *_, src in trajectories]
    reports = backend.sample(
        report_prompts,
        SamplingParams(n=1, temperature=gen.temperature, top_p=gen.top_p, max_tokens=gen.report_tokens, seed=seed + 1),
        desc=f"round {round_idx} reports",
    )
    seconds = time.perf_counter() - t0

    rows = []
    for (qi, k, subqs, fallback, searches, sources), report_prompt, [report] in zip(trajectories, report_prompts, reports):
        q, plan = queries[qi], plans[qi][k]
        spans = [_span("plan", plan_prompts[qi], plan), _span("report", report_prompt, report)]
        rows.append(
            {
                "round": round_idx,
                "query_id": q.id,
                "query": q.text,
                "sample_idx": k,
                "trajectory_id": _trajectory_id(cfg.run, round_idx, q.id, k),
                "plan": subqs or [q.text],
                "plan_fallback": fallback,
                "searches": [
                    {"query": sq, "passage_ids": [p.id for p in hit], "scores": [p.score for p in hit]} for sq, hit in searches
                ],
                "sources": [
                    {"n": n, "passage_id": p.id, "title": p.title, "url": p.source, "text": p.text[: gen.passage_chars]}
                    for n, p in sources
                ],
                "report": report.text,
                "cited": cited_sources(report.text, len(sources)),
                "finish_reason": report.finish_reason,
                "spans": spans,
                "prompt_tokens": plan.prompt_tokens + report.prompt_tokens,
                "completion_tokens": len(plan.token_ids) + len(report.token_ids),
                "checkpoint": policy.name,
                "seed": seed,
            }
        )
    written = backend.usage.completion_tokens - tokens0
    stats = {
        "queries": len(queries),
        "reports": len(rows),
        "completion_tokens": written,
        "tokens_per_second": round(written / seconds, 2) if seconds else 0.0,
        "mean_report_tokens": round(sum(len(r[0].token_ids) for r in reports) / max(len(reports), 1), 1),
        "truncated_share": round(sum(r[0].finish_reason == "length" for r in reports) / max(len(reports), 1), 3),
        "citing_share": round(sum(bool(r["cited"]) for r in rows) / max(len(rows), 1), 3),
        "plan_fallback_share": round(sum(r["plan_fallback"] for r in rows) / max(len(rows), 1), 3),
    }
    return rows, stats


def _number_sources(hits: list[list[Passage]], limit: int) -> list[tuple[int, Passage]]:
    """Distinct passages in search order, numbered from 1, at most `limit`."""
    seen: dict[str, Passage] = {}
    for hit in hits:
        for p in hit:
            if p.id not in seen and len(seen) < limit:
                seen[p.id] = p
    return list(enumerate(seen.values(), start=1))


def _span(name: str, prompt: str, s) -> dict:
    return {
        "name": name, "prompt": prompt, "text": s.text, "token_ids": s.token_ids,
        "logprobs": s.logprobs, "finish_reason": s.finish_reason,
    }


def _trajectory_id(run: str, round_idx: int, query_id: str, k: int) -> str:
    return hashlib.sha256(f"{run}/{round_idx}/{query_id}/{k}".encode()).hexdigest()[:16]
