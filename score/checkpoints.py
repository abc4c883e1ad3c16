"""Checkpoints and policies: which weights a round samples with, what a checkpoint folder holds, and how a
user names one (`base`, `latest`, `round-N`, a folder).

A checkpoint folder is what the train stage writes into `round-r/train/checkpoint/`: a PEFT LoRA adapter
(`adapter_config.json`, `adapter_model.safetensors`) or a full model folder (`config.json`, weights,
tokenizer), plus the trainer's `optimizer.safetensors` and `trainer_state.json`. Its kind is read from
its own files, never from a manifest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from score.artifacts import file_sha256
from score.config import ModelConfig
from score.layout import CHECKPOINT, finished_rounds, round_label, stage_dir
from score.pipeline import TRAIN

if TYPE_CHECKING:
    from score.workspace import Workspace

STATE_FILE = "trainer_state.json"  # {"step": global optimizer step, "method": lora | full}
OPTIMIZER_FILE = "optimizer.safetensors"  # AdamW state keyed by parameter name (not weights: vLLM must skip it)
Kind = Literal["lora", "full"]


class CheckpointError(ValueError):
    """A checkpoint that does not exist or that SCORE cannot load; the message names the fix."""


@dataclass(frozen=True)
class Policy:
    """The weights something samples with: the base model, or a checkpoint on top of it."""

    name: str  # "base" or the checkpoint's address: what the artifacts record
    path: str | None = None  # local folder of the checkpoint (None: the base model)
    kind: Kind | None = None  # lora: an adapter folder on the base; full: a model folder
    fingerprint: str = ""  # what the weights are, for the fingerprints of the work that samples from them


def base_policy(model: ModelConfig) -> Policy:
    return Policy("base", fingerprint=f"base:{model.path}")


def checkpoint_kind(folder: Path) -> Kind:
    """What a checkpoint folder holds, from its own files; raises, naming the file, when they cannot be loaded
    (a config that is not JSON, no weights), before any work starts."""
    for kind, config, weights in (("lora", "adapter_config.json", "adapter_model*"), ("full", "config.json", "*")):
        if (folder / config).exists():
            try:
                json.loads((folder / config).read_text())
            except (ValueError, UnicodeDecodeError) as e:
                raise CheckpointError(f"{folder / config} is not valid JSON ({e}); is {folder} a checkpoint?") from None
            found = [p for ext in ("safetensors", "bin") for p in folder.glob(f"{weights}.{ext}")]
            if not [p for p in found if p.name != OPTIMIZER_FILE]:
                raise CheckpointError(f"{folder} has {config} but no weights ({weights}.safetensors) beside it")
            return kind  # type: ignore[return-value]
    raise CheckpointError(f"{folder} holds neither a LoRA adapter (adapter_config.json) nor a model (config.json)")


def policy_for_round(ws: Workspace, round_idx: int) -> Policy:
    """The weights round `round_idx` samples with: the base model in round 0, else the checkpoint round r-1's
    train stage wrote (which must be finished). On a remote store the checkpoint is fetched once."""
    if round_idx == 0:
        return base_policy(ws.cfg.model)
    folder = stage_dir(ws.cfg.run, round_idx - 1, TRAIN.folder)
    version = ws.store.finished(folder, f"run round {round_idx - 1}'s stages first").content_fingerprint()
    local = ws.store.local_folder(f"{folder}/{CHECKPOINT}", ws.cache / "checkpoints", version)
    return Policy(
        ws.store.display(folder, CHECKPOINT), str(local), checkpoint_kind(local), f"{ws.cfg.model.path}+{version}"
    )


def resolve(ws: Workspace, spec: str) -> tuple[str, Policy]:
    """(label, policy) for a user's checkpoint: 'base'; 'latest' (the last finished train of the config's run);
    'round-N' or 'N' (round N's train checkpoint); or a local checkpoint folder (a LoRA adapter or a full model)."""
    if spec == "base":
        return "base", base_policy(ws.cfg.model)
    if spec == "latest" or spec.removeprefix("round-").isdigit():
        run = ws.cfg.run
        trained = finished_rounds(ws.store, run, TRAIN.folder)
        r = (trained[-1] if trained else None) if spec == "latest" else int(spec.removeprefix("round-"))
        if r is None or r not in trained:
            raise CheckpointError(
                f"run {run!r} has no finished train stage{'' if r is None else f' in round {r}'} in {ws.store.url} "
                f"(trained rounds: {trained or 'none'}); run `score run` first, or pass --checkpoint base or a "
                "checkpoint folder"
            )
        return round_label(r), policy_for_round(ws, r + 1)  # the weights round r's train wrote
    folder = Path(spec)
    if not folder.is_dir():
        raise CheckpointError(
            f"checkpoint {spec!r} is neither 'base', 'latest', 'round-N' nor a folder; pass one of those"
        )
    kind = checkpoint_kind(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())  # every file: weights, configs, tokenizer
    blob = "".join(f"{p.relative_to(folder).as_posix()}:{file_sha256(p)}\n" for p in files)
    fp = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return f"folder-{fp[:8]}", Policy(str(folder.resolve()), str(folder), kind, f"{ws.cfg.model.path}+{fp}")


def latest_or_base(ws: Workspace) -> str:
    """'latest' when the config's run has a trained round, else 'base'."""
    return "latest" if finished_rounds(ws.store, ws.cfg.run, TRAIN.folder) else "base"
