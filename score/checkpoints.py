"""Checkpoints and policies: what a checkpoint folder holds and which weights something samples with (which
checkpoint a round samples with, and what a user's name for one means: `score.history`).

A checkpoint folder is what the train stage writes into `round-r/train/checkpoint/`: a PEFT LoRA adapter
(`adapter_config.json`, `adapter_model.safetensors`) or a full model folder (`config.json`, weights,
tokenizer), plus the trainer's `optimizer.safetensors` and `trainer_state.json`. Its kind is read from
its own files, never from a manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from score.config import ModelConfig

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
