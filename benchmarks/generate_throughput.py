"""Generate stage vs raw backend: tokens/s of `generate-reports` beside `backend.sample` on the same prompts.

The stage adds rendering, search, Parquet writing and the manifest around the same sampling calls; the
ratio says what that costs. Target: >= 0.9. Run: `python benchmarks/generate_throughput.py [--set k=v ...]`
(default config: configs/default.yaml, store in a temporary folder).
"""

from __future__ import annotations

import time

from common import bench_workspace

from score.artifacts import REPORTS
from score.layout import stage_dir
from score.models import SamplingParams
from score.pipeline import GENERATE, GenerateStats
from score.runner import run_stage


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
        plans = list({r["query_id"]: r["spans"][0] for r in rows}.values())  # one per query, K samples each
        reports = [r["spans"][1] for r in rows]
        t0 = time.perf_counter()
        before = backend.usage.completion_tokens
        seed = rows[0]["seed"]  # the stage's own seeds: same prompts, same seeds, so the same tokens are sampled
        common = dict(temperature=gen.temperature)
        backend.sample(
            [s["prompt"] for s in plans],
            SamplingParams(n=gen.samples_per_query, max_tokens=gen.plan_tokens, seed=seed, **common),
            prefix=[s["prefix"] for s in plans],
        )
        backend.sample(
            [s["prompt"] for s in reports],
            SamplingParams(n=1, max_tokens=gen.report_tokens, seed=seed + 1, **common),
            prefix=[s["prefix"] for s in reports],
        )
        raw_s = time.perf_counter() - t0
        raw_tokens = backend.usage.completion_tokens - before

    stage_tps, raw_tps = stage_tokens / stage_s, raw_tokens / raw_s
    print(f"reports: {len(rows)} ({len(plans)} queries x {gen.samples_per_query})")
    print(f"generate stage : {stage_tokens:6d} tokens in {stage_s:7.1f} s = {stage_tps:6.1f} tokens/s")
    print(f"raw backend    : {raw_tokens:6d} tokens in {raw_s:7.1f} s = {raw_tps:6.1f} tokens/s")
    print(f"stage / raw    : {stage_tps / raw_tps:.2f}  (target >= 0.90)")
    overhead = stage_s - stage_sampling_s
    print(
        f"stage time outside sampling (search, rendering, Parquet, manifest): {overhead:.1f} s = "
        f"{overhead / stage_s:.1%}"
    )
    if raw_tokens != stage_tokens:
        print("note: the two calls sampled different tokens, so part of the gap is sampling variance, not overhead")


if __name__ == "__main__":
    main()
