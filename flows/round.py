"""One co-evolution round as one Prefect flow run; each stage is one task run. Also: one stage alone, and a
campaign over rounds.

Tasks take the config as a plain dict and return the stage folder's address: paths, never DataFrames. Each
stage task is handed the folders it reads from (so the Prefect graph draws the pipeline); the runner reads
them through the layout. Prefect's own result caching is off: resume is the manifests' job (see
score.runner), because Prefect's cache cannot see helper code, data files or the environment.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import artifact_key, link_folder, publish_plots, resolve_config, run_name, workspace, writing
from score import pipeline
from score.inspect import stage_markdown
from score.layout import benchmark_dir, finished_rounds, round_label
from score.pipeline import EVALUATE, EVOLVE, GENERATE, TRAIN, StageSpec
from score.runner import run_stage


def _run(spec: StageSpec, config: dict, round_idx: int, force: bool) -> str:
    """Run one stage behind its manifest and publish its numbers, a sample and its folder as artifacts."""
    ws = workspace(config)
    outcome = run_stage(ws, spec, round_idx, force=force)
    get_run_logger().info(
        "%s round %d: %s -> %s", spec.name, round_idx, "skipped (done)" if outcome.skipped else "done", outcome.folder
    )
    key = artifact_key(ws.cfg.run, f"r{round_idx:04d}-{spec.name}")
    stats = vars(outcome.manifest.stats_as(spec.stats))
    create_table_artifact(
        key=key,
        table=[{"stat": k, "value": str(v)} for k, v in stats.items()] + [{"stat": "folder", "value": outcome.folder}],
        description=f"{spec.name}, round {round_idx}: key numbers",
    )
    create_markdown_artifact(
        key=f"{key}-sample",
        markdown=stage_markdown(ws.store, ws.cfg.run, round_idx, spec),
        description=f"{spec.name}, round {round_idx}: a sample, and the stage's files",
    )
    link_folder(f"{key}-folder", outcome.folder, f"{spec.name}, round {round_idx}: its Parquet files and manifest")
    return outcome.folder


# One task per stage; retries 0: a failed stage is rerun by rerunning the round (finished stages skip).
@task(name=GENERATE.name, task_run_name="generate-reports-r{round_idx:04d}", cache_policy=NO_CACHE, retries=0)
def generate_reports(config: dict, round_idx: int, force: bool = False) -> str:
    return _run(GENERATE, config, round_idx, force)


@task(name=EVALUATE.name, task_run_name="self-evaluate-r{round_idx:04d}", cache_policy=NO_CACHE, retries=0)
def self_evaluate(config: dict, round_idx: int, reports: str | None = None, force: bool = False) -> str:
    return _run(EVALUATE, config, round_idx, force)


@task(name=EVOLVE.name, task_run_name="harness-evolve-r{round_idx:04d}", cache_policy=NO_CACHE, retries=0)
def harness_evolve(config: dict, round_idx: int, evaluations: str | None = None, force: bool = False) -> str:
    return _run(EVOLVE, config, round_idx, force)


@task(name=TRAIN.name, task_run_name="train-r{round_idx:04d}", cache_policy=NO_CACHE, retries=0)
def train(
    config: dict, round_idx: int, reports: str | None = None, evaluations: str | None = None, force: bool = False
) -> str:
    return _run(TRAIN, config, round_idx, force)


# retries 0: a failed evaluation is rerun by rerunning the flow (a finished one skips)
@task(cache_policy=NO_CACHE, retries=0, task_run_name="benchmark-{checkpoint}")
def benchmark_task(config: dict, checkpoint: str, force: bool = False) -> str:
    from score.artifacts import BENCHMARK
    from score.benchmark import BenchmarkStats, evaluate  # loaded by the flows that score checkpoints only

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


STAGE_TASKS = {
    GENERATE.name: generate_reports,
    EVALUATE.name: self_evaluate,
    EVOLVE.name: harness_evolve,
    TRAIN.name: train,
}


@task(cache_policy=NO_CACHE, retries=0, task_run_name="report-r{round_idx:04d}")
def report_task(config: dict, round_idx: int) -> str:
    """Plot the run so far (score.report) and publish the PNGs as one markdown artifact."""
    ws = workspace(config)
    if not finished_rounds(ws.store, ws.cfg.run, EVALUATE.folder):
        get_run_logger().info("no round of %s is evaluated yet: nothing to plot", ws.cfg.run)
        return ""
    run = ws.cfg.run
    return str(publish_plots(ws, "plots", f"{run}: round by round", f"plots of {run} (score report {run})"))


@flow(name="score-round", flow_run_name=lambda: run_name("round-{round_idx:04d}"), persist_result=False)
def round_flow(
    config: dict | str, round_idx: int, force: bool = False, overrides: list[str] | None = None
) -> dict[str, str]:
    """The four stages of one round, in order; finished stages are skipped unless `force`.
    `config` is a config dict or a YAML path; `overrides` are `section.key=value` strings."""
    config = resolve_config(config, overrides)
    with writing(config):  # one writer, and none between two stages
        reports = generate_reports(config, round_idx, force=force)
        evaluations = self_evaluate(config, round_idx, reports, force=force)
        harness = harness_evolve(config, round_idx, evaluations, force=force)
        checkpoint = train(config, round_idx, reports, evaluations, force=force)
        if config["benchmark"]["each_round"]:  # the held-out score round r+1's judge-hacking alarm reads
            benchmark_task(config, round_label(round_idx))
        plots = report_task(config, round_idx)
    return {
        "reports": reports,
        "evaluations": evaluations,
        "harness": harness,
        "checkpoint": checkpoint,
        "plots": plots,
    }


@flow(name="score-stage", flow_run_name=lambda: run_name("round-{round_idx:04d}-{stage}"), persist_result=False)
def stage_flow(
    config: dict | str, stage: str, round_idx: int, force: bool = False, overrides: list[str] | None = None
) -> str:
    """One stage of one round (its inputs must be finished): reruns from the CLI, the UI or a deployment."""
    config = resolve_config(config, overrides)
    spec = pipeline.stage(stage)
    with writing(config):
        folder = STAGE_TASKS[spec.name](config, round_idx, force=force)
        report_task(config, round_idx)
    return folder


@flow(name="score-campaign", flow_run_name=lambda: run_name("campaign"), persist_result=False)
def campaign_flow(
    config: dict | str, rounds: int | None = None, overrides: list[str] | None = None
) -> list[dict[str, str]]:
    """Run `rounds` co-evolution rounds (default: campaign.rounds), each a `score-round` flow run."""
    config = resolve_config(config, overrides)
    total = rounds if rounds is not None else config["campaign"]["rounds"]
    with writing(config):  # one writer, and none between two rounds
        return [round_flow(config, r) for r in range(total)]
