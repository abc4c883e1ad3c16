"""Generate stage vs raw backend: tokens/s of `generate-reports` beside `backend.sample` on the same prompts.

The stage adds rendering, search, Parquet writing and the manifest around the same sampling calls; the
ratio says what that costs. With `generate.agent: react` (the default) the raw side replays every turn of the
stage's own trajectories: each turn's contexts (prompt, earlier turns, tool outputs) as one batched call with the
turn's seed, so what is left out is the loop's bookkeeping (parsing calls, searching, tokenizing tool outputs).
Targets: >= 0.9 (plan), >= 0.8 (react). Run: `python benchmarks/generate_throughput.py [--set k=v ...]`
(default config: configs/default.yaml, store in a temporary folder).
"""

from __future__ import annotations

import time

from common import bench_workspace

from score.agent import STOPS
from score.models import SamplingParams
from score.pipeline import GENERATE, GenerateStats
from score.runner import run_stage
from score.store.layout import stage_dir
from score.store.schemas import REPORTS


def main() -> None:
    with bench_workspace(__doc__.split("\n\n")[0]) as ws:
        backend, gen = ws.backend(), ws.cfg.generate

        t0 = time.perf_counter()
        sampling0 = backend.usage.seconds
        out = run_stage(ws, GENERATE, 0, force=True)
        stage_s = time.perf_counter() - t0
        stage_sampling_s = backend.usage.seconds - sampling0  # the part of the stage spent inside backend.sample
        stage_tokens = out.manifest.stats_as(GenerateStats).completion_tokens

        rows = ws.store.read_table(stage_dir(ws.cfg.run, 0, GENERATE.folder), REPORTS.file).to_pylist()
        replay = _replay_react if gen.agent == "react" else _replay_plan
        t0 = time.perf_counter()
        before = backend.usage.completion_tokens
        replay(backend, gen, rows)
        raw_s = time.perf_counter() - t0
        raw_tokens = backend.usage.completion_tokens - before

    stage_tps, raw_tps = stage_tokens / stage_s, raw_tokens / raw_s
    K = gen.samples_per_query
    print(f"agent {gen.agent}: {len(rows)} trajectories ({len(rows) // K} queries x {K})")
    print(f"generate stage : {stage_tokens:6d} tokens in {stage_s:7.1f} s = {stage_tps:6.1f} tokens/s")
    print(f"raw backend    : {raw_tokens:6d} tokens in {raw_s:7.1f} s = {raw_tps:6.1f} tokens/s")
    print(f"stage / raw    : {stage_tps / raw_tps:.2f}  (target >= {0.8 if gen.agent == 'react' else 0.9:.2f})")
    overhead = stage_s - stage_sampling_s
    print(
        f"stage time outside sampling (search, rendering, Parquet, manifest): {overhead:.1f} s = "
        f"{overhead / stage_s:.1%}"
    )
    if raw_tokens != stage_tokens:
        print("note: the two calls sampled different tokens, so part of the gap is sampling variance, not overhead")


def _replay_plan(backend, gen, rows: list[dict]) -> None:
    """The plan template's two calls on the stage's own prompts and seeds."""
    plans = list({r["query_id"]: r["spans"][0] for r in rows}.values())  # one per query, K samples each
    reports = [r["spans"][1] for r in rows]
    seed = rows[0]["seed"]  # the stage's own seeds: same prompts, same seeds, so the same tokens are sampled
    backend.sample(
        [s["prompt"] for s in plans],
        SamplingParams(n=gen.samples_per_query, temperature=gen.temperature, max_tokens=gen.plan_tokens, seed=seed),
        prefix=[s["prefix"] for s in plans],
    )
    backend.sample(
        [s["prompt"] for s in reports],
        SamplingParams(n=1, temperature=gen.temperature, max_tokens=gen.report_tokens, seed=seed + 1),
        prefix=[s["prefix"] for s in reports],
    )


def _replay_react(backend, gen, rows: list[dict]) -> None:
    """Every turn of the stage's trajectories as the loop sampled it: turn k's contexts in one call, its seed."""
    contexts: list[list[list[int]]] = []  # per trajectory, the context before each written turn
    for r in rows:
        [span] = r["spans"]
        head, ids, mask = backend.tokenize(span["prefix"]), span["token_ids"], span["mask"]
        starts = [i for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1])]
        contexts.append([head + ids[:i] for i in starts])
    for k in range(max(len(c) for c in contexts)):
        turn = [c[k] for c in contexts if len(c) > k]
        budget = gen.call_tokens if k == 0 else gen.report_tokens  # the first turn is the prefilled <search> call
        params = SamplingParams(
            temperature=gen.temperature, max_tokens=budget, stop=STOPS, seed=rows[0]["seed"] + 1000 * k
        )
        backend.sample(turn, params)


if __name__ == "__main__":
    main()
