"""One co-evolution round as one Prefect flow run; each stage is one task run. Also: one stage alone, and a
campaign over rounds.

Tasks take the config as a plain dict and return the stage folder's address: paths, never DataFrames. Each
stage task is handed the folders it reads from (so the Prefect graph draws the pipeline); the runner reads
them through the layout. Prefect's own result caching is off: resume is the manifests' job (see
score.runner), because Prefect's cache cannot see helper code, data files or the environment.
"""

from __future__ import annotations

import tempfile
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.states import Completed, State
from prefect.task_runners import ProcessPoolTaskRunner

from flows.common import (
    artifact_key,
    publish_folder,
    publish_plots,
    resolve_config,
    run_name,
    tagged,
    tracking,
    workspace,
    writing,
)
from score import pipeline
from score.history import CampaignStopped, stop_reason
from score.inspection import stage_markdown
from score.models.devices import check_workers, keep_pinned, on_gpu, pin, visible_devices
from score.pipeline import EVALUATE, EVOLVE, GENERATE, TRAIN, StageName, StageSpec
from score.progress import key_values
from score.runner import run_shard, run_stage
from score.store.layout import benchmark_dir, finished_rounds, round_label, stage_dir
from score.store.lease import holder
from score.store.schemas import TRAIN_STEPS


def skipped(what: str, folder: str) -> State:
    """The state of a task whose work was already done (its manifest matches): Completed, named Skipped, so the UI
    tells it from real work; it publishes nothing (the artifacts of the run that did the work stay the latest)."""
    return Completed(
        name="Skipped", message=f"{what}: done already (its manifest matches), nothing redone", data=folder
    )


def folder_of(result: str | State) -> str:
    """A stage task's folder, whether it ran (the folder) or was skipped (a Skipped state holding it)."""
    return result.result() if isinstance(result, State) else result


def _run(spec: StageSpec, config: dict, round_idx: int, force: bool) -> str | State:
    """Run one stage behind its manifest (a sharded one: close over its shards, which `shards` ran); when it ran,
    publish its numbers, the round's sample report as the stage saw it and its folder as artifacts, and log its
    numbers to the run's trackers."""
    ws = workspace(config)
    outcome = run_stage(ws, spec, round_idx, force=force, redo_shards=False)
    if outcome.skipped:
        return skipped(f"{spec.name} round {round_idx}", outcome.folder)
    stats = vars(outcome.manifest.stats_as(spec.stats))
    get_run_logger().info("%s round %d: done · %s -> %s", spec.name, round_idx, key_values(stats), outcome.folder)
    folder = stage_dir(ws.cfg.run, round_idx, spec.folder)
    steps = ws.store.read_table(folder, TRAIN_STEPS.file).to_pylist() if spec is TRAIN else None
    tracking(config).stage(spec.name, round_idx, stats, steps)
    key = artifact_key(ws.cfg.run, f"r{round_idx:04d}-{spec.name}")
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
    publish_folder(f"{key}-folder", outcome.folder, f"{spec.name}, round {round_idx}: its Parquet files and manifest")
    if stats.get("note"):  # a round that learned nothing says so, in the task's state too
        get_run_logger().warning("%s round %d: %s", spec.name, round_idx, stats["note"])
        return Completed(message=stats["note"], data=outcome.folder)
    return outcome.folder


@task(name="shard", task_run_name="{stage}-r{round_idx:04d}-shard-{index}", cache_policy=NO_CACHE, retries=0)
def shard(config: dict, stage: str, round_idx: int, index: int, holder: str, force: bool = False) -> str | State:
    """One shard of a sharded stage, behind its own manifest, written for `holder` (the flow holding the run)."""
    keep_pinned()  # in a pool worker: its own GPU only
    ws = workspace(config)
    outcome = run_shard(ws, stage, round_idx, index, force=force, holder=holder)
    if outcome.skipped:
        return skipped(f"{stage} round {round_idx} shard {index}", outcome.folder)
    get_run_logger().info("%s round %d shard %d: done in %.0f s", stage, round_idx, index, outcome.manifest.seconds)
    return outcome.folder


def shards(spec: StageSpec, config: dict, round_idx: int, workers: int, force: bool) -> list[str | State]:
    """The stage's shards as tasks (none when it runs whole): with `workers` > 1, that many at once, each in its
    own process (a process pool: each loads the model once, and on a GPU machine each sees only its own GPU,
    `score.models.devices`); a shard that fails fails the round after the others finish, and the rerun redoes only
    the unfinished ones."""
    n = spec.shard_count(config)
    if n == 1:
        return []
    calls = [
        dict(config=config, stage=spec.name, round_idx=round_idx, index=i, holder=holder(), force=force)
        for i in range(n)
    ]
    if workers == 1:
        return [shard(**c) for c in calls]
    size, devices, model = min(workers, n), visible_devices(), config["model"]
    check_workers(size, devices, on_gpu(model["backend"], model["device"]))
    with (
        tempfile.TemporaryDirectory(prefix="score-devices-") as locks,
        ProcessPoolTaskRunner(max_workers=size, initializer=pin, initargs=(devices, locks)) as runner,
    ):
        futures = [runner.submit(shard, c) for c in calls]
        wait(futures)
        return [f.result() for f in futures]


# One task per stage; retries 0: a failed stage is rerun by rerunning the round (finished stages skip).
@task(name=GENERATE.name, task_run_name="generate-reports-r{round_idx:04d}", cache_policy=NO_CACHE, retries=0)
def generate_reports(config: dict, round_idx: int, force: bool = False, parts: Any = None) -> str | State:
    return _run(GENERATE, config, round_idx, force)


@task(name=EVALUATE.name, task_run_name="self-evaluate-r{round_idx:04d}", cache_policy=NO_CACHE, retries=0)
def self_evaluate(
    config: dict, round_idx: int, reports: Any = None, force: bool = False, parts: Any = None
) -> str | State:
    return _run(EVALUATE, config, round_idx, force)


@task(name=EVOLVE.name, task_run_name="harness-evolve-r{round_idx:04d}", cache_policy=NO_CACHE, retries=0)
def harness_evolve(config: dict, round_idx: int, evaluations: Any = None, force: bool = False) -> str | State:
    return _run(EVOLVE, config, round_idx, force)


@task(name=TRAIN.name, task_run_name="train-r{round_idx:04d}", cache_policy=NO_CACHE, retries=0)
def train(
    config: dict, round_idx: int, reports: Any = None, evaluations: Any = None, force: bool = False
) -> str | State:
    return _run(TRAIN, config, round_idx, force)


def _measured(config: dict, kind: str, label: str, stats, folder: str) -> None:
    """A checkpoint's measurement (benchmark, heldout) done: logged, and a round's sent to the trackers at its round."""
    get_run_logger().info("%s of %s: done · %s -> %s", kind, label, key_values(vars(stats)), folder)
    if label.startswith("round-"):
        tracking(config).stage(kind, int(label.removeprefix("round-")), vars(stats))


# retries 0: a failed evaluation is rerun by rerunning the flow (a finished one skips)
@task(cache_policy=NO_CACHE, retries=0, task_run_name="benchmark-{checkpoint}")
def benchmark_task(config: dict, checkpoint: str, force: bool = False) -> str | State:
    from score.benchmark import evaluate  # loaded by the flows that score checkpoints only
    from score.store.schemas import BENCHMARK, BenchmarkStats

    ws = workspace(config)
    outcome = evaluate(ws, checkpoint, force=force)
    label, stats = outcome.manifest.label, outcome.manifest.stats_as(BenchmarkStats)
    if outcome.skipped:
        return skipped(f"benchmark of {label}", outcome.folder)
    _measured(config, "benchmark", label, stats, outcome.folder)
    key = artifact_key(ws.cfg.run, f"benchmark-{label}")
    rows = ws.store.read_table(benchmark_dir(ws.cfg.run, label), BENCHMARK.file).to_pylist()
    create_table_artifact(
        key=key,
        table=[{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        description=f"{stats.benchmark} of {label} ({stats.tasks} tasks, judge {stats.judge}, reference "
        f"{stats.reference}): "
        f"score per dimension, mean and spread over {stats.judge_runs} judge runs; 0.5 = as good as the reference",
    )
    publish_folder(f"{key}-folder", outcome.folder, f"benchmark files of {label}")
    return outcome.folder


# retries 0: a failed measurement is rerun by rerunning the round (a finished one skips)
@task(cache_policy=NO_CACHE, retries=0, task_run_name="heldout-{checkpoint}")
def heldout_task(config: dict, checkpoint: str) -> str | State:
    """The checkpoint's gold measures on the held-out queries (score.gold); Skipped when the query file holds none."""
    from score.gold import HeldoutStats, evaluate_heldout

    ws = workspace(config)
    if not ws.heldout_queries:
        return skipped(f"held-out gold of {checkpoint} (the query file has no held-out rows)", "")
    outcome = evaluate_heldout(ws, checkpoint)
    label, stats = outcome.manifest.label, outcome.manifest.stats_as(HeldoutStats)
    if outcome.skipped:
        return skipped(f"held-out gold of {label}", outcome.folder)
    _measured(config, "heldout", label, stats, outcome.folder)
    create_table_artifact(
        key=artifact_key(ws.cfg.run, f"heldout-{label}"),
        table=[{"stat": k, "value": str(v)} for k, v in vars(stats).items()],
        description=f"{label} on {stats.queries} held-out queries, {stats.reports} reports: gold measures",
    )
    return outcome.folder


STAGE_TASKS = {
    GENERATE.name: generate_reports,
    EVALUATE.name: self_evaluate,
    EVOLVE.name: harness_evolve,
    TRAIN.name: train,
}


@task(cache_policy=NO_CACHE, retries=0, task_run_name="plots-r{round_idx:04d}", name="plots")
def report_task(config: dict, round_idx: int, changed: bool = True) -> str | State:
    """Plot the run so far (score.report), publish the PNGs as one markdown artifact and log them to the trackers;
    skipped when nothing of the round was redone (`changed` false)."""
    ws = workspace(config)
    if not changed:
        return skipped(f"plots of round {round_idx}", "")
    if not finished_rounds(ws.store, ws.cfg.run, EVALUATE.folder):
        get_run_logger().info("no round of %s is evaluated yet: nothing to plot", ws.cfg.run)
        return ""
    run = ws.cfg.run
    folder, paths = publish_plots(ws, "plots", f"{run}: round by round", f"plots of {run} (score report {run})")
    tracking(config).plots(paths, round_idx)
    return str(folder)


@flow(name="score-round", flow_run_name=lambda: run_name("round-{round_idx:04d}"), persist_result=False)
def round_flow(
    config: dict | str, round_idx: int, force: bool = False, overrides: list[str] | None = None, workers: int = 1
) -> dict[str, str]:
    """The four stages of one round, in order; finished stages are skipped (labelled Skipped) unless `force`.

    Args:
        config: a YAML config's path (e.g. configs/default.yaml), or a config as a dict
        round_idx: the round, 0-based; its inputs (the previous round's checkpoint and harness) must be finished
        force: redo every stage of the round even where its manifest matches
        overrides: config overrides as section.key=value, e.g. ["data.queries_per_round=4"]
        workers: processes running a sharded stage's shards at once (generate.shards, evaluate.shards); 1: in turn
    """
    source, config = config, resolve_config(config, overrides)
    with writing(config), tagged(config, source, round_idx):  # one writer, and none between two stages
        parts = shards(GENERATE, config, round_idx, workers, force)
        done = {"reports": generate_reports(config, round_idx, force=force, parts=parts)}
        parts = shards(EVALUATE, config, round_idx, workers, force)
        done["evaluations"] = self_evaluate(config, round_idx, done["reports"], force=force, parts=parts)
        done["harness"] = harness_evolve(config, round_idx, done["evaluations"], force=force)
        done["checkpoint"] = train(config, round_idx, done["reports"], done["evaluations"], force=force)
        if config["data"]["heldout"] > 0:  # gold on the held-out queries (score.gold), read by no stage
            if round_idx == 0:
                done["heldout-base"] = heldout_task(config, "base")  # where both arms of an ablation start
            done["heldout"] = heldout_task(config, round_label(round_idx))
        if config["benchmark"]["each_round"]:  # the held-out score round r+1's judge-hacking alarm reads
            done["benchmark"] = benchmark_task(config, round_label(round_idx))
        changed = not all(isinstance(x, State) and x.name == "Skipped" for x in done.values())
        done["plots"] = report_task(config, round_idx, changed)
    return {k: folder_of(v) for k, v in done.items()}


@flow(name="score-stage", flow_run_name=lambda: run_name("round-{round_idx:04d}-{stage}"), persist_result=False)
def stage_flow(
    config: dict | str,
    stage: StageName,
    round_idx: int,
    force: bool = False,
    overrides: list[str] | None = None,
    workers: int = 1,
) -> str:
    """One stage of one round (its inputs must be finished): reruns from the CLI, the UI or a deployment.

    Args:
        config: a YAML config's path (e.g. configs/default.yaml), or a config as a dict
        stage: the stage to run
        round_idx: the round, 0-based; the stage's inputs in it must be finished
        force: redo the stage even where its manifest matches (otherwise a finished stage is skipped)
        overrides: config overrides as section.key=value, e.g. ["store.root=s3://bucket/runs"]
        workers: processes running the stage's shards at once, when it is sharded; 1: in turn
    """
    source, config = config, resolve_config(config, overrides)
    spec = pipeline.stage(stage)
    with writing(config), tagged(config, source, round_idx):
        parts = shards(spec, config, round_idx, workers, force)
        folder = STAGE_TASKS[spec.name](config, round_idx, force=force, **({"parts": parts} if parts else {}))
        report_task(config, round_idx, not (isinstance(folder, State) and folder.name == "Skipped"))
    return folder_of(folder)


@flow(name="score-campaign", flow_run_name=lambda: run_name("campaign"), persist_result=False)
def campaign_flow(
    config: dict | str, rounds: int | None = None, overrides: list[str] | None = None, workers: int = 1
) -> list[dict[str, str]]:
    """Run `rounds` co-evolution rounds, each a `score-round` flow run; finished stages are skipped.

    Args:
        config: a YAML config's path (e.g. configs/default.yaml), or a config as a dict
        rounds: how many rounds (default: the config's campaign.rounds)
        overrides: config overrides as section.key=value, e.g. ["data.queries_per_round=4"]
        workers: processes running a sharded stage's shards at once (generate.shards, evaluate.shards); 1: in turn
    """
    source, config = config, resolve_config(config, overrides)
    total = rounds if rounds is not None else config["campaign"]["rounds"]
    with writing(config), tagged(config, source):  # one writer, and none between two rounds
        done = []
        for r in range(total):
            done.append(round_flow(config, r, workers=workers))
            if r + 1 < total and (why := stop_reason(workspace(config), r)):
                raise CampaignStopped(why)
        return done
