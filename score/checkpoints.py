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


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Every tensor's shape in a safetensors file, read from its header (no weights loaded); raises CheckpointError
    naming the file when it is not one (truncated, overwritten)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error kinds for a damaged header
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})"[:300]) from None


def check_folder(folder: Path, kind: Kind, base: Path) -> None:
    """A user's checkpoint folder (a round's is checked by its manifest's hashes): every safetensors file reads,
    and an adapter fits the base model in folder `base`; raises CheckpointError naming the file or the layer."""
    for path in folder.glob("*.safetensors"):
        tensor_shapes(path)
    if kind == "lora" and (why := adapter_mismatch(folder, base)):
        raise CheckpointError(
            f"checkpoint {folder} does not fit the base model ({base}): {why}; pass a checkpoint trained on it, or set "
            "model.path to the model it was trained on"
        )


def adapter_mismatch(adapter: Path, base: Path) -> str | None:
    """Why the LoRA adapter in folder `adapter` does not fit the base model in folder `base` (a matrix whose
    width is not its layer's), or None; checked on the files' headers. A base without safetensors is not checked."""
    base_shapes = {k: v for p in base.glob("*.safetensors") for k, v in tensor_shapes(p).items()}
    if not base_shapes:
        return None
    for path in adapter.glob("adapter_model*.safetensors"):
        for key, shape in tensor_shapes(path).items():
            module, _, part = key.removeprefix("base_model.model.").rpartition(".lora_")
            layer = base_shapes.get(f"{module}.weight")
            if layer is None or len(shape) != 2:
                continue
            wanted, got = (layer[1], shape[1]) if part.startswith("A") else (layer[0], shape[0])
            if wanted != got:
                return f"{key} is {shape}, but the base model's {module} is {layer}"
    return None


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
