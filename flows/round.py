"""One co-evolution round as one Prefect flow run; each stage is one task run.

Tasks take the config as a plain dict and return the stage folder's address: paths, never DataFrames.
Prefect's own result caching is off: resume is the manifests' job (see score.runner), because Prefect's
cache cannot see helper code, data files or the environment.
"""

from __future__ import annotations

from functools import lru_cache
import json

from flows import env  # noqa: F401
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from score.config import RunConfig
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
    create_table_artifact(
        key=f"{ws.cfg.run}-r{round_idx:04d}-{stage}".lower().replace("_", "-").replace(".", "-"),
        table=[{"stat": k, "value": str(v)} for k, v in stats.items()] + [{"stat": "folder", "value": outcome.folder}],
        description=f"{stage}, round {round_idx}: key numbers",
    )
    return outcome.folder


def _round_run_name() -> str:
    params = flow_run.parameters
    return f"{params['config']['run']}-round-{params['round_idx']:04d}"


@flow(name="score-round", flow_run_name=_round_run_name, persist_result=False)
def round_flow(config: dict, round_idx: int, stage: str | None = None, force: bool = False) -> dict[str, str]:
    """Run the stages of one round in order (or only `stage`); finished stages are skipped unless `force`."""
    folders = {}
    for name in STAGE_NAMES if stage is None else (stage,):
        folders[name] = stage_task.with_options(name=name, task_run_name=f"{name}-r{round_idx:04d}")(
            config, name, round_idx, force
        )
    return folders


@flow(name="score-campaign", flow_run_name="{config[run]}-campaign", persist_result=False)
def campaign_flow(config: dict, rounds: int | None = None) -> list[dict[str, str]]:
    """Run `rounds` co-evolution rounds (default: campaign.rounds), each a `score-round` flow run."""
    total = rounds if rounds is not None else config["campaign"]["rounds"]
    return [round_flow(config, r) for r in range(total)]
