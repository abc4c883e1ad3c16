"""A memory plan before GPU hours are spent: what the sampler and one train step need on one GPU, for a config.

Arithmetic over the model's own config.json: its parameters and the LoRA adapter's are counted exactly on the
meta device (no weights read); everything else is a formula, written beside its row. Activations use
10 x hidden + 4 x intermediate values per token per decoder layer (the inputs of the attention and the SwiGLU
MLP that backward keeps; 1.43 MB per token on the 135M model in fp32, where 1.6 MB was measured); with
gradient checkpointing, one layer's plus every layer's input. What is not arithmetic is an allowance, named so:
vLLM's CUDA graphs, workspaces and profile-run activations (`VLLM_ALLOWANCE_GIB`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from score.config import RunConfig

GIB = 2**30
VLLM_ALLOWANCE_GIB = 2.0  # CUDA graphs, cuBLAS workspaces, the profile run's activations: not computed here
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
LORA_BYTES = 4 + 4 + 8  # per adapter parameter: fp32 weight (peft upcasts), fp32 gradient, AdamW's two moments


@dataclass(frozen=True)
class Architecture:
    """What memory depends on, from a model's config.json."""

    params: int  # every weight, tied ones once
    lora_params: int  # an adapter of rank 1 on train.target_modules (scales with the rank)
    layers: int
    hidden: int
    intermediate: int
    kv_heads: int
    head_dim: int
    vocab: int
    whole_logits: bool = False  # logits changed after the output layer (a soft cap, a scale): made whole, not chunked


@dataclass(frozen=True)
class Line:
    part: str
    gib: float
    how: str  # the formula, or "counted", or "allowance"


def architecture(config_json: Path, targets: list[str]) -> Architecture:
    """The architecture of the model whose config.json is `config_json` (a file, or the folder holding it),
    built on the meta device."""
    import torch

    from score.models import meta_model

    model = meta_model(config_json)
    config = model.config
    linear = [
        m
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in set(targets)
    ]
    return Architecture(
        params=sum(p.numel() for p in model.parameters()),
        lora_params=sum(m.in_features + m.out_features for m in linear),
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        intermediate=config.intermediate_size,
        kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
        vocab=config.vocab_size,
        whole_logits=bool(getattr(config, "final_logit_softcapping", None))
        or getattr(config, "logit_scale", 1) != 1
        or getattr(config, "logits_scaling", 1) != 1,
    )


def kv_bytes_per_token(arch: Architecture, dtype_bytes: int) -> int:
    """Keys and values of every layer for one token.

    >>> kv_bytes_per_token(Architecture(0, 0, 28, 3584, 18944, 4, 128, 152064), 2)  # Qwen2.5-7B, bf16: 56 KiB
    57344
    """
    return 2 * arch.layers * arch.kv_heads * arch.head_dim * dtype_bytes


def sampler_plan(cfg: RunConfig, arch: Architecture, gpu_gib: float) -> tuple[list[Line], dict]:
    """The sampler's memory on one GPU. vLLM: its share of the GPU, and what is left of it for the KV cache, in
    tokens and in trajectories of generate.max_context_tokens; transformers: the weights and the cache of
    model.batch_size such trajectories. Returns the lines and {kv_tokens, trajectories, budget_gib}."""
    m, v, b = cfg.model, cfg.model.vllm, DTYPE_BYTES[cfg.model.dtype]
    tp = v.tensor_parallel_size if m.backend == "vllm" else 1  # weights and KV cache are split over tensor parallel
    per_token = kv_bytes_per_token(arch, b) / tp
    lines = [Line("weights", arch.params * b / tp / GIB, "parameters x dtype (/ tensor parallel)")]
    if m.backend == "vllm":
        lines.append(Line("LoRA slot", arch.lora_params * v.max_lora_rank * b / GIB, "adapter at max_lora_rank"))
        lines.append(Line("CUDA graphs, workspaces", VLLM_ALLOWANCE_GIB, "allowance"))
        budget = gpu_gib * v.gpu_memory_utilization
        kv = v.kv_cache_gib if v.kv_cache_gib is not None else budget - sum(x.gib for x in lines)
    else:  # the transformers backend's cache grows with the batch it decodes
        kv = m.batch_size * cfg.generate.max_context_tokens * per_token / GIB
        budget = sum(x.gib for x in lines) + kv
    tokens = max(int(kv * GIB / per_token), 0)
    lines.append(Line("KV cache", kv, f"{per_token / 1024:.0f} KiB a token: {tokens:,} tokens"))
    return lines, dict(kv_tokens=tokens, trajectories=tokens // cfg.generate.max_context_tokens, budget_gib=budget)


def trainer_plan(cfg: RunConfig, arch: Architecture, chunk: int) -> list[Line]:
    """One train step's peak on one GPU: weights, what the optimizer trains, the activations and the logits of one
    micro-batch of train.micro_batch_tokens tokens, all of them written (a react trajectory's tool outputs are
    in its log-probs too), and a packed row's attention mask. `chunk`: written positions whose logits and fp32
    log-softmax are made at once (`score.trainer.token_logprobs`); a model whose logits are changed after the output
    layer has them made whole by its forward (`score.trainer.output_layer`), as FSDP and DeepSpeed do."""
    t, b = cfg.train, DTYPE_BYTES[cfg.model.dtype]
    T, h, i, L = t.micro_batch_tokens, arch.hidden, arch.intermediate, arch.layers
    lines = [Line("weights", arch.params * b / GIB, "parameters x dtype")]
    if t.method == "lora":
        lines.append(Line("LoRA, its gradient, AdamW", arch.lora_params * t.lora_rank * LORA_BYTES / GIB, "16 B each"))
    else:
        lines.append(Line("gradients, AdamW", arch.params * 3 * b / GIB, "3 x parameters x dtype"))
        if t.kl_coef > 0:
            lines.append(Line("frozen reference copy", arch.params * b / GIB, "parameters x dtype"))
    per_layer = T * (10 * h + 4 * i) * b
    if t.gradient_checkpointing:
        lines.append(Line("activations", (L * T * h * b + per_layer) / GIB, "layer inputs + one layer's, recomputed"))
    else:
        lines.append(Line("activations", L * per_layer / GIB, "(10 hidden + 4 intermediate) x tokens x layers"))
    if arch.whole_logits:
        lines.append(Line("logits and their gradient", 2 * T * arch.vocab * b / GIB, "tokens x vocabulary x 2 x dtype"))
        fp32 = min(T, chunk) * arch.vocab * 12
        lines.append(Line("fp32 log-softmax", fp32 / GIB, f"{min(T, chunk)} positions at a time x vocabulary x 12 B"))
    else:
        lines.append(Line("hidden states and their gradient", 3 * T * h * b / GIB, "3 x tokens x hidden x dtype"))
        one = min(T, chunk) * arch.vocab * (2 * b + 12)
        how = f"{min(T, chunk)} positions at a time x vocabulary x (2 x dtype + 12 B)"
        lines.append(Line("logits, fp32 log-softmax", one / GIB, how))
    lines.append(Line("packed row's attention mask", T * T * (b + 2) / GIB, "tokens^2 x (dtype + 2 bool)"))
    return lines


def fits(cfg: RunConfig, sampler: dict, trainer_gib: float, gpu_gib: float) -> str:
    """'' when both fit one GPU of `gpu_gib`, else what does not, with the fix."""
    if sampler["budget_gib"] > gpu_gib:
        return (
            f"the sampler needs about {sampler['budget_gib']:.1f} GiB, more than the GPU's {gpu_gib:g}: lower "
            "model.batch_size or generate.max_context_tokens, or use a larger GPU"
        )
    if sampler["trajectories"] < 1:
        return (
            f"the KV cache holds {sampler['kv_tokens']:,} tokens, less than one trajectory of "
            f"generate.max_context_tokens {cfg.generate.max_context_tokens}: raise model.vllm.gpu_memory_utilization, "
            "lower max_context_tokens, or use a larger GPU"
        )
    if trainer_gib > gpu_gib:
        t = cfg.train
        fixes = ["lower train.micro_batch_tokens"]
        fixes += [] if t.gradient_checkpointing else ["set train.gradient_checkpointing: true"]
        fixes += [] if t.method == "lora" else ["use train.method: lora"]
        return f"a train step needs about {trainer_gib:.1f} GiB, more than the GPU's {gpu_gib:g}: {', or '.join(fixes)}"
    return ""


def plan_tables(cfg: RunConfig, config_json: Path, gpu_gib: float) -> tuple[list, str]:
    """The sampler's and the train step's plans as rich tables, and what does not fit ('' when both do)."""
    from rich.table import Table

    from score.trainer import LOGSOFTMAX_CHUNK

    arch = architecture(config_json, cfg.train.target_modules)
    sampler, room = sampler_plan(cfg, arch, gpu_gib)
    trainer = trainer_plan(cfg, arch, LOGSOFTMAX_CHUNK)
    peak = sum(x.gib for x in trainer)
    tables = []
    for title, lines, total in (
        (f"sampler ({cfg.model.backend}), {room['budget_gib']:.1f} GiB of {gpu_gib:g}", sampler, room["budget_gib"]),
        (f"train step, micro-batch {cfg.train.micro_batch_tokens} tokens", trainer, peak),
    ):
        table = Table(title=title, title_justify="left")
        for column in ("part", "GiB", "how"):
            table.add_column(column, justify="right" if column == "GiB" else "left")
        for x in lines:
            table.add_row(x.part, f"{x.gib:.2f}", x.how)
        table.add_row("total", f"{total:.2f}", "", style="bold")
        tables.append(table)
    note = f"{room['trajectories']} trajectories of {cfg.generate.max_context_tokens} tokens fit the KV cache at once"
    tables.append(f"{arch.params / 1e9:.2f}B parameters; {note}; the train step peaks at about {peak:.1f} GiB")
    return tables, fits(cfg, room, peak, gpu_gib)


def check_memory(cfg: RunConfig, folder: Path) -> None:
    """On a CUDA device, refuse a config whose sampler or train step does not fit the GPU, before any model loads
    (ConfigError naming the fix); nothing to check on a CPU or without the model's config.json in `folder`."""
    if not cfg.model.device.startswith("cuda"):  # no torch import on a CPU: `score run` checks this first
        return
    import torch

    from score.config import ConfigError

    if not torch.cuda.is_available():
        return
    if not (folder / "config.json").is_file():
        return
    gpu_gib = torch.cuda.get_device_properties(torch.device(cfg.model.device)).total_memory / GIB
    problem = plan_problem(cfg, architecture(folder / "config.json", cfg.train.target_modules), gpu_gib)
    if problem:
        raise ConfigError(f"{problem} (`score plan` prints the whole memory plan)")


def plan_problem(cfg: RunConfig, arch: Architecture, gpu_gib: float) -> str:
    """What does not fit one GPU of `gpu_gib` for `cfg` ('' when both the sampler and a train step do)."""
    from score.trainer import LOGSOFTMAX_CHUNK

    _, room = sampler_plan(cfg, arch, gpu_gib)
    return fits(cfg, room, sum(x.gib for x in trainer_plan(cfg, arch, LOGSOFTMAX_CHUNK)), gpu_gib)
