"""What every stage shares: its result type, seed derivation, and which policy weights a round uses."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from score.artifacts import ArtifactError, FileInfo, round_dir
from score.workspace import Policy, Workspace

if TYPE_CHECKING:
    from score.harness import Harness


@dataclass
class StageResult:
    files: dict[str, FileInfo]
    stats: dict[str, Any] = field(default_factory=dict)  # the stage's key numbers, copied into its manifest


def derive_seed(base: int, round_idx: int, stage: str) -> int:
    """A stable per-(round, stage) seed, so reruns of one stage reproduce it without rerunning the others.

    >>> derive_seed(0, 1, "generate-reports") == derive_seed(0, 1, "generate-reports") != derive_seed(0, 2, "generate-reports")
    True
    """
    return int.from_bytes(hashlib.sha256(f"{base}/{round_idx}/{stage}".encode()).digest()[:4], "little")


def policy_for_round(ws: Workspace, round_idx: int) -> Policy:
    """The weights round `round_idx` samples with: the base model in round 0, else the checkpoint round
    r-1's train stage wrote (which must be finished). On a remote store the checkpoint is fetched once."""
    if round_idx == 0:
        return Policy("base", fingerprint=f"base:{ws.cfg.model.path}")
    folder = f"{round_dir(ws.cfg.run, round_idx - 1)}/train"
    version = upstream(ws, round_idx - 1, "train")
    method = ws.store.read_manifest(folder)["stats"]["method"]
    local = ws.store.local_folder(f"{folder}/checkpoint", ws.cache / "checkpoints", version)
    return Policy(ws.store.display(folder, "checkpoint"), str(local), method, f"{ws.cfg.model.path}+{version}")


def harness_for_round(ws: Workspace, round_idx: int) -> tuple["Harness", str]:
    """The harness round `round_idx` evaluates under, and its fingerprint: the seed harness of the config in
    round 0, else the one round r-1's harness-evolve wrote (which must be finished)."""
    from score.harness import from_rows, seed_harness

    if round_idx == 0:
        return seed_harness(ws.cfg.harness), "seed:" + ws.cfg.section_fingerprint("harness")
    dims = ws.store.read_table(f"{round_dir(ws.cfg.run, round_idx - 1)}/harness", "harness.parquet").to_pylist()
    controls = ws.store.read_table(f"{round_dir(ws.cfg.run, round_idx - 1)}/harness", "controls.parquet").to_pylist()[0]
    return from_rows(dims, controls), upstream(ws, round_idx - 1, "harness")


def upstream(ws: Workspace, round_idx: int, folder: str) -> str:
    """The content fingerprint of a finished stage folder (a hash of its files' sha256), so a forced rerun that
    writes different outputs invalidates everything downstream, and one that writes the same does not.
    Raises, naming the folder, when it is not finished."""
    path = f"{round_dir(ws.cfg.run, round_idx)}/{folder}"
    manifest = ws.store.read_manifest(path)
    if manifest is None:
        raise ArtifactError(f"{ws.store.display(path)} is not finished; run round {round_idx}'s earlier stages first")
    hashes = sorted(f"{name}:{info['sha256']}" for name, info in manifest["files"].items())
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:16]
