"""What the flows share: one Workspace and one set of trackers per process and config, config parameters, flow-run
tags and names, artifact keys, the folder and plots artifacts. Public: `flows/round.py` and `flows/benchmark.py`
both use it."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from prefect import tags
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows import env  # noqa: F401  (sets Prefect's environment before prefect is imported)
from score.config import RunConfig, load_config
from score.report import plots_into_store
from score.store.lease import holding
from score.tracking import Tracking
from score.workspace import Workspace


def workspace(config: dict) -> Workspace:
    """One Workspace per process and config, so a campaign loads the model and the index once."""
    return _workspace(json.dumps(config, sort_keys=True))


@lru_cache(maxsize=2)  # score ablate alternates two runs: keep both models loaded (about 1 GB each)
def _workspace(config_json: str) -> Workspace:
    return Workspace(RunConfig.model_validate_json(config_json))


def tracking(config: dict) -> Tracking:
    """The run's experiment trackers (score.tracking), one set per process and run."""
    return _tracking(json.dumps(config, sort_keys=True))


@lru_cache(maxsize=4)  # score ablate alternates two runs
def _tracking(config_json: str) -> Tracking:
    ws = workspace(json.loads(config_json))
    return Tracking(ws.cfg, None if ws.store.remote else Path(ws.store.root))


@contextmanager
def tagged(config: dict, source: dict | str, round_idx: int | None = None) -> Iterator[None]:
    """Tag this flow run with `run:<name>` (and `round:<n>`) so the UI's Runs page filters by them; when the flow was
    handed a YAML path (a deployment), also `config:<file stem>`, which the flow runs it starts inherit (the CLI tags
    its flow runs with the file it loaded the same way)."""
    from prefect.client.orchestration import get_client

    mine = {f"run:{config['run']}"} | ({f"round:{round_idx}"} if round_idx is not None else set())
    inherited = [f"config:{Path(source).stem}"] if isinstance(source, str) else []
    if flow_run.get_id():
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(flow_run.get_id()).tags
            client.update_flow_run(flow_run.get_id(), tags=sorted(set(current) | mine | set(inherited)))
    with tags(*inherited):
        yield


@contextmanager
def writing(config: dict) -> Iterator[None]:
    """Hold the run's writer lease (`score.store.lease`) for a flow's duration; a top-level flow that gets it marks the
    run's flow runs a killed process left RUNNING as Crashed (holding the lease, no other process writes the run),
    and shows the run's tracker state: running, then finished or failed."""
    with holding(workspace(config).store, config["run"]):
        top = flow_run.get_parent_flow_run_id() is None
        if top:
            crash_stale_flow_runs(config["run"])
            tracking(config).begin()  # the MLflow run shows RUNNING while the flow runs ...
        try:
            yield
        except BaseException:
            if top:
                tracking(config).end("FAILED")  # ... FAILED when it fails ...
            raise
        if top:
            tracking(config).end("FINISHED")  # ... FINISHED when it ends


def crash_stale_flow_runs(run: str) -> int:
    """Flow runs of `run` (`_of_run`) still RUNNING other than this one: set Crashed, with why. Returns how many."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    running = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
    with get_client(sync_client=True) as client:
        stale = [
            r
            for r in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"{run}-"), state=running)
            )
            if _of_run(r.name, run) and str(r.id) != flow_run.get_id()
        ]
        for r in stale:
            why = f"its process stopped without ending it (found by a later writer of run {run!r})"
            client.set_flow_run_state(r.id, Crashed(message=why), force=True)
    if stale:
        logging.getLogger(__name__).warning("marked %d flow run(s) of %s left running as Crashed", len(stale), run)
    return len(stale)


def _of_run(flow_run_name: str, run: str) -> bool:
    """Whether a flow run is one of `run`'s (`run_name`'s names), not of a run whose name only starts the same.

    >>> _of_run("ci-round-0001-train", "ci"), _of_run("ci-campaign", "ci"), _of_run("ci-static-round-0000", "ci")
    (True, True, False)
    """
    return re.fullmatch(rf"{re.escape(run)}-(campaign|round-\d{{4}}(-[a-z-]+)?)", flow_run_name) is not None


def resolve_config(config: dict | str, overrides: list[str] | None = None) -> dict:
    """A flow's `config` parameter: a config dict (what `score run` passes) or a YAML path (what a
    deployment or the UI's custom run passes), with `section.key=value` overrides; validated either way."""
    if isinstance(config, str):
        return load_config(config, overrides or []).model_dump(mode="json")
    return load_config(None, overrides or [], tree=config).model_dump(mode="json")


def run_name(suffix: str, **defaults) -> str:
    """A flow run's name: the run of its `config` parameter, then `suffix` formatted with its parameters
    (`defaults` for those a caller may leave out)."""
    p = {**defaults, **flow_run.parameters}
    return f"{resolve_config(p['config'], p.get('overrides'))['run']}-{suffix.format(**p)}"


def artifact_key(run: str, suffix: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only.

    >>> artifact_key("My_Run", "r0001-train")
    'my-run-r0001-train'
    """
    return re.sub(r"[^a-z0-9-]", "-", f"{run}-{suffix}".lower())


def publish_folder(key: str, address: str, description: str) -> None:
    """A store folder as a copyable path (a local path, or its s3:// address): browsers open no file:// link from a
    web page, so a link artifact would be dead."""
    shown = address if "://" in address else str(Path(address).resolve())
    create_markdown_artifact(key=key, markdown=f"**{description}**\n\n```\n{shown}\n```\n", description=description)


def publish_plots(
    ws: Workspace, suffix: str, title: str, description: str, baseline: str | None = None
) -> tuple[str, list[Path]]:
    """Plot the run into the store (score.report, beside `baseline` when given) and publish the PNGs as one
    markdown artifact, inline as data URIs (the UI needs no access to the files). Returns the plots' store address
    and the PNGs as local files."""
    folder, paths = plots_into_store(ws.store, ws.cfg.run, baseline)
    images = "\n\n".join(
        f"![{p.stem}](data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()})" for p in paths
    )
    create_markdown_artifact(
        key=artifact_key(ws.cfg.run, suffix),
        markdown=f"# {title}\n\n{images}\n\nFiles: `{folder}`",
        description=description,
    )
    return folder, paths
