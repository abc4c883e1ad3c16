"""Run stages behind manifests: a stage whose manifest matches its config and inputs is skipped.

This is where resume lives (not in Prefect's cache, which cannot see helper code or data): a stage's
fingerprint hashes its name, the config sections its outputs depend on and the fingerprints of its inputs
(upstream manifests, data files, the policy weights). A folder without a manifest is cleared and redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any

from score.artifacts import round_dir
from score.stages import evaluate, evolve, generate, train
from score.workspace import Workspace

log = logging.getLogger(__name__)

STAGES: dict[str, ModuleType] = {m.NAME: m for m in (generate, evaluate, evolve, train)}  # in round order
STAGE_NAMES = tuple(STAGES)


class UnknownStage(ValueError):
    pass


@dataclass
class StageOutcome:
    stage: str
    round: int
    folder: str  # user-facing address of the stage folder
    skipped: bool
    manifest: dict[str, Any]


def stage_folder(ws: Workspace, name: str, round_idx: int) -> str:
    return f"{round_dir(ws.cfg.run, round_idx)}/{STAGES[name].FOLDER}"


def stage_fingerprint(ws: Workspace, name: str, inputs: dict[str, str]) -> str:
    config = ws.cfg.section_fingerprint(*STAGES[name].CONFIG)
    blob = json.dumps({"stage": name, "config": config, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_stage(ws: Workspace, name: str, round_idx: int, force: bool = False) -> StageOutcome:
    if name not in STAGES:
        raise UnknownStage(f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}")
    if round_idx < 0:
        raise ValueError(f"round must be >= 0, got {round_idx}")
    stage = STAGES[name]
    folder = stage_folder(ws, name, round_idx)
    inputs = stage.inputs(ws, round_idx)
    fingerprint = stage_fingerprint(ws, name, inputs)
    old = ws.store.read_manifest(folder)
    if old is not None and old.get("fingerprint") == fingerprint and not force:
        log.info("round %d %s: done already (manifest matches), skipped", round_idx, name)
        return StageOutcome(name, round_idx, ws.store.display(folder), True, old)
    if old is not None:
        log.info("round %d %s: %s, redoing", round_idx, name, "forced" if force else "config or inputs changed")
    main = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch` only the main process writes
    if main:
        ws.store.clear(folder)  # whatever a killed attempt left behind
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    result = stage.run(ws, round_idx, folder)
    manifest = {
        "stage": name,
        "run": ws.cfg.run,
        "round": round_idx,
        "fingerprint": fingerprint,
        "config_fingerprint": ws.cfg.section_fingerprint(*stage.CONFIG),
        "config": {s: ws.cfg.model_dump(mode="json")[s] for s in stage.CONFIG if s != "store"},
        "inputs": inputs,
        "files": {f: vars(info) for f, info in result.files.items()},
        "stats": result.stats,
        "started_at": started.isoformat(),
        "seconds": round(time.perf_counter() - t0, 2),
        "versions": _versions(),
    }
    if main:
        ws.store.write_manifest(folder, manifest)  # last: from now on the folder exists for readers
    return StageOutcome(name, round_idx, ws.store.display(folder), False, manifest)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("score", "torch", "transformers", "pyarrow", "peft", "vllm"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
