"""What every stage shares: its result type, seed derivation, and which policy weights a round uses."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from score.artifacts import FileInfo
from score.workspace import Workspace


@dataclass
class StageResult:
    files: dict[str, FileInfo]
    stats: dict[str, Any] = field(default_factory=dict)  # the stage's key numbers, copied into its manifest


@dataclass(frozen=True)
class Policy:
    adapter: str | None  # LoRA folder on top of the base model, None for the base itself
    fingerprint: str  # what the weights are, for the fingerprints of the stages that sample from them


def derive_seed(base: int, round_idx: int, stage: str) -> int:
    """A stable per-(round, stage) seed, so reruns of one stage reproduce it without rerunning the others.

    >>> derive_seed(0, 1, "generate-reports") == derive_seed(0, 1, "generate-reports") != derive_seed(0, 2, "generate-reports")
    True
    """
    return int.from_bytes(hashlib.sha256(f"{base}/{round_idx}/{stage}".encode()).digest()[:4], "little")


def policy_for_round(ws: Workspace, round_idx: int) -> Policy:
    """The weights round `round_idx` samples with: the base model until a train stage writes a checkpoint."""
    return Policy(adapter=None, fingerprint=f"base:{ws.cfg.model.path}")
