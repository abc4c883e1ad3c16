"""Benchmark evaluation and the co-evolution ablation as Prefect flows.

`score-eval`: one task scoring one checkpoint on the benchmark (score.benchmark), publishing the
per-dimension scores with their spread over judge runs as a table artifact.
`score-ablate`: the same campaign twice, with the meta-harness (`rules`) and with the seed harness frozen
(`static`, run `{run}-static`), same queries, seeds and rounds; then every round's checkpoint of both on the
benchmark, then one report drawing both runs on the same axes. Finished stages and evaluations are skipped,
so an ablation over the run `make run` made reuses its rounds.
"""

from __future__ import annotations

import json

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import artifact_key, link_folder, publish_plots, resolve_config, run_name, workspace
from flows.round import campaign_flow
from score.artifacts import BENCHMARK
from score.benchmark import BenchmarkStats, evaluate
from score.layout import benchmark_dir, round_label


@task(cache_policy=NO_CACHE, retries=0)  # a failed evaluation is rerun by rerunning the flow: a finished one skips
def benchmark_task(config: dict, checkpoint: str, force: bool = False) -> str:
    ws = workspace(config)
    outcome = evaluate(ws, checkpoint, force=force)
    label, stats = outcome.manifest.label, outcome.manifest.stats_as(BenchmarkStats)
    get_run_logger().info(
        "benchmark of %s: %s -> %s", label, "skipped (done)" if outcome.skipped else "done", outcome.folder
    )
    key = artifact_key(ws.cfg.run, f"benchmark-{label}")
    rows = ws.store.read_table(benchmark_dir(ws.cfg.run, label), BENCHMARK.file).to_pylist()
    create_table_artifact(
        key=key,
        table=[{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        description=f"{stats.benchmark} of {label} ({stats.tasks} tasks, judge {stats.judge}, reference "
        f"{stats.reference}): "
        f"score per dimension, mean and spread over {stats.judge_runs} judge runs; 0.5 = as good as the reference",
    )
    link_folder(f"{key}-folder", outcome.folder, f"benchmark files of {label}")
    return outcome.folder


@flow(name="score-eval", flow_run_name=lambda: run_name("eval-{checkpoint}", checkpoint="latest"), persist_result=False)
def eval_flow(
    config: dict | str, checkpoint: str = "latest", force: bool = False, overrides: list[str] | None = None
) -> str:
    """Score `checkpoint` (base, latest, round-N or a checkpoint folder) on the config's benchmark."""
    return benchmark_task(resolve_config(config, overrides), checkpoint, force)


def static_twin(config: dict) -> dict:
    """The baseline arm of an ablation: the same config with the seed harness frozen, in run `{run}-static`."""
    twin = json.loads(json.dumps(config))
    twin["run"] = f"{config['run']}-static"
    twin["harness"]["mode"] = "static"
    return twin


@flow(name="score-ablate", flow_run_name=lambda: run_name("ablate"), persist_result=False)
def ablate_flow(config: dict | str, rounds: int | None = None, overrides: list[str] | None = None) -> str:
    """SCORE (the config, harness.mode rules) against the static-harness baseline: campaigns, the benchmark
    score of every round's checkpoint, and the side-by-side report. Returns the report folder."""
    arms = [resolve_config(config, overrides)]
    if arms[0]["harness"]["mode"] != "rules":
        raise ValueError(
            "score ablate compares the meta-harness with the static baseline: the config needs harness.mode: rules"
        )
    arms.append(static_twin(arms[0]))
    total = rounds if rounds is not None else arms[0]["campaign"]["rounds"]
    for arm in arms:
        campaign_flow(arm, total)
        for r in range(total):
            benchmark_task.with_options(task_run_name=f"benchmark-{arm['run']}-r{r:04d}")(arm, round_label(r))
    return report_pair(arms[0], arms[1]["run"])


@task(cache_policy=NO_CACHE, retries=0)
def report_pair(config: dict, baseline: str) -> str:
    ws = workspace(config)
    title = f"{ws.cfg.run} (meta-harness, solid) vs {baseline} (static harness, dashed)"
    return str(publish_plots(ws, "ablation", title, f"ablation: {ws.cfg.run} vs {baseline}", baseline))
