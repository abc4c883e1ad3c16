"""Model backends behind one interface (`score.models.base.Backend`); `load_backend` picks one from config."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from score.config import ModelConfig
from score.models.base import Backend, Message, Sample, SamplingParams, WrittenScore
from score.models.embedded import EMBEDDED_NAME, cache_root, ensure_embedded_model

__all__ = ["Backend", "Message", "Sample", "SamplingParams", "WrittenScore", "load_backend", "resolve_model_path"]


def resolve_model_path(cfg: ModelConfig) -> str:
    """The local folder holding the base model's weights (the embedded model is converted on first use)."""
    return str(ensure_embedded_model()) if cfg.path == EMBEDDED_NAME else cfg.path


def model_folder(cfg: ModelConfig, cache: Path | None = None) -> Path:
    """Where the base model's files are or will be, converting nothing: for checks that read its config.json or
    weight headers when they are there (the embedded model's appear at its first use)."""
    return (
        (cache or cache_root()) / "models" / EMBEDDED_NAME if cfg.path == EMBEDDED_NAME else Path(cfg.path).expanduser()
    )


def linear_layers(folder: Path, cache: Path | None = None) -> list[str] | None:
    """The names of the linear layers of the model whose config.json is in `folder` (`q_proj`, `down_proj`, ...),
    built on the meta device: no weights read, no memory; None when there is no config there. Kept in `cache`
    (default: SCORE_CACHE) by the config's bytes and the transformers version: building the model takes seconds of
    imports, and every `score run` checks its target modules before any work."""
    import hashlib
    import importlib.metadata
    import json

    config = folder / "config.json"
    if not config.is_file():
        return None
    key = hashlib.sha256(config.read_bytes() + importlib.metadata.version("transformers").encode()).hexdigest()
    known = (cache or cache_root()) / "linear-layers" / f"{key[:24]}.json"
    if known.is_file():
        return json.loads(known.read_text())
    names = linear_layer_names(meta_model(folder))
    known.parent.mkdir(parents=True, exist_ok=True)
    part = known.with_name(f".{known.name}.{os.getpid()}")  # written whole, then renamed: never read half
    part.write_text(json.dumps(names))
    part.replace(known)
    return names


def meta_model(config: Path):
    """The model of a config.json (`config`: the file, or the folder holding it) built on the meta device: its
    shapes and modules, no weights read, no memory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(config)))


def linear_layer_names(model) -> list[str]:
    """The names (last part) of a torch model's linear layers, sorted: what `train.target_modules` may name."""
    import torch

    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})


def check_target_modules(linear: Sequence[str], targets: Sequence[str]) -> None:
    """Every `train.target_modules` name is one of the model's `linear` layers (else PEFT stops the stage with its
    own error); raises ConfigError naming them."""
    from score.config import ConfigError

    missing = [t for t in targets if t not in linear]
    if missing:
        raise ConfigError(
            f"train.target_modules {missing} are not linear layers of the model; its linear layers: {list(linear)}; "
            "set train.target_modules to some of them"
        )


def load_backend(cfg: ModelConfig, adapter: str | None = None) -> Backend:
    """Build the configured engine on the base model, with a LoRA `adapter` folder on top when given."""
    if cfg.backend == "transformers":
        from score.models.transformers_backend import TransformersBackend

        return TransformersBackend(
            resolve_model_path(cfg),
            adapter=adapter,
            dtype=cfg.dtype,
            device=cfg.device,
            batch_size=cfg.batch_size,
            threads=cfg.threads,
        )
    from score.models.vllm_backend import VLLMBackend

    return VLLMBackend(resolve_model_path(cfg), adapter=adapter, dtype=cfg.dtype, settings=cfg.vllm)
