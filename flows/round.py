"""One co-evolution round as one Prefect flow run; each stage is one task run.

Tasks take the config as a plain dict and return the stage folder's address: paths, never DataFrames.
Prefect's own result caching is off: resume is the manifests' job (see score.runner), because Prefect's
cache cannot see helper code, data files or the environment.
"""

from __future__ import annotations

import base64
import json
import re
from functools import lru_cache
from pathlib import Path

from flows import env  # noqa: F401
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from score.config import RunConfig, load_config
from score.artifacts import round_dir
from score.inspect import run_rounds, stage_markdown
from score.report import write_report
from score.runner import STAGE_NAMES, run_stage
from score.workspace import Workspace


@lru_cache(maxsize=1)
def _workspace(config_json: str) -> Workspace:
    """One Workspace per process and config, so a campaign loads the model and the index once."""
    return Workspace(RunConfig.model_validate_json(config_json))


@task(cache_policy=NO_CACHE, retries=0)  # a failed stage is rerun by rerunning the round: finished stages skip
def stage_task(config: dict, stage: str, round_idx: int, force: bool = False) -> str:
    ws = _workspace(json.dumps(config, sort_keys=True))
    outcome = run_stage(ws, stage, round_idx, force=force)
    logger = get_run_logger()
    logger.info("%s round %d: %s -> %s", stage, round_idx, "skipped (done)" if outcome.skipped else "done", outcome.folder)
    stats = outcome.manifest.get("stats", {})
    key = _artifact_key(ws.cfg.run, f"r{round_idx:04d}-{stage}")
    create_table_artifact(
        key=key,
        table=[{"stat": k, "value": str(v)} for k, v in stats.items()] + [{"stat": "folder", "value": outcome.folder}],
        description=f"{stage}, round {round_idx}: key numbers",
    )
    create_markdown_artifact(
        key=f"{key}-sample", markdown=stage_markdown(ws.store, ws.cfg.run, round_idx, stage),
        description=f"{stage}, round {round_idx}: a sample, and the stage's files",
    )
    create_link_artifact(
        key=f"{key}-folder", link=_link(outcome.folder), link_text=outcome.folder,
        description=f"{stage}, round {round_idx}: its Parquet files and manifest",
    )
    return outcome.folder


@task(cache_policy=NO_CACHE, retries=0)
def report_task(config: dict) -> str:
    """Plot the run so far (score.report) and publish the PNGs as one markdown artifact."""
    ws = _workspace(json.dumps(config, sort_keys=True))
    folder = Path("reports") / ws.cfg.run
    if not any(ws.store.read_manifest(f"{round_dir(ws.cfg.run, r)}/evaluate") for r in run_rounds(ws.store, ws.cfg.run)):
        get_run_logger().info("no round of %s is evaluated yet: nothing to plot", ws.cfg.run)
        return ""
    paths = write_report(ws.store, ws.cfg.run, folder)
    publish_plots(_artifact_key(ws.cfg.run, "plots"), f"{ws.cfg.run}: round by round", paths, folder, f"plots of {ws.cfg.run} (score report {ws.cfg.run})")
    return str(folder)


def publish_plots(key: str, title: str, paths: list[Path], folder: Path, description: str) -> None:
    """One markdown artifact holding the PNGs inline (data URIs: the UI needs no access to the files)."""
    images = "\n\n".join(f"![{p.stem}](data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()})" for p in paths)
    create_markdown_artifact(key=key, markdown=f"# {title}\n\n{images}\n\nFiles: `{folder.resolve()}`", description=description)


def _artifact_key(run: str, suffix: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]", "-", f"{run}-{suffix}".lower())


def _link(address: str) -> str:
    return address if "://" in address else Path(address).resolve().as_uri()


def resolve_config(config: dict | str, overrides: list[str] | None = None) -> dict:
    """A flow's `config` parameter: a config dict (what `score run` passes) or a YAML path (what a
    deployment or the UI's custom run passes), with `section.key=value` overrides; validated either way."""
    if isinstance(config, str):
        return load_config(config, overrides or []).model_dump(mode="json")
    return load_config(None, overrides or [], tree=config).model_dump(mode="json")


def _run_name(config: dict | str, overrides: list[str] | None) -> str:
    return resolve_config(config, overrides)["run"]


def _round_run_name() -> str:
    p = flow_run.parameters
    return f"{_run_name(p['config'], p.get('overrides'))}-round-{p['round_idx']:04d}"


def _campaign_run_name() -> str:
    p = flow_run.parameters
    return f"{_run_name(p['config'], p.get('overrides'))}-campaign"


@flow(name="score-round", flow_run_name=_round_run_name, persist_result=False)
def round_flow(
    config: dict | str, round_idx: int, stage: str | None = None, force: bool = False, overrides: list[str] | None = None
) -> dict[str, str]:
    """Run the stages of one round in order (or only `stage`); finished stages are skipped unless `force`.
    `config` is a config dict or a YAML path; `overrides` are `section.key=value` strings."""
    config = resolve_config(config, overrides)
    if stage is not None and stage not in STAGE_NAMES:
        raise ValueError(f"unknown stage {stage!r}; stages are: {', '.join(STAGE_NAMES)}")
    folders = {}
    for name in STAGE_NAMES if stage is None else (stage,):
        folders[name] = stage_task.with_options(name=name, task_run_name=f"{name}-r{round_idx:04d}")(
            config, name, round_idx, force
        )
    folders["report"] = report_task.with_options(task_run_name=f"report-r{round_idx:04d}")(config)
    return folders


@flow(name="score-campaign", flow_run_name=_campaign_run_name, persist_result=False)
def campaign_flow(config: dict | str, rounds: int | None = None, overrides: list[str] | None = None) -> list[dict[str, str]]:
    """Run `rounds` co-evolution rounds (default: campaign.rounds), each a `score-round` flow run."""
    config = resolve_config(config, overrides)
    total = rounds if rounds is not None else config["campaign"]["rounds"]
    return [round_flow(config, r) for r in range(total)]
