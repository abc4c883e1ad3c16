"""GPU check: the sampler's and the train step's tokens/s on real model shapes, beside plain `generate` and the peak.

Per shape, a randomly initialised model (`benchmarks/shapes/*.json`: Qwen2.5-0.5B and 1.5B as published; kernel
times do not depend on the weights, so nothing is downloaded), bf16 on the GPU, prompts made with the embedded
tokenizer. The model and tokenizer are saved to a temporary folder, which the project's `TransformersBackend` and
`Trainer` load like any local model (a save and a load, no download). Then, each timed after a warm-up:
1. sampler: `TransformersBackend.sample`, `--batch` prompts of `--prompt-tokens` tokens, `--new-tokens` each, at
   the generate stage's default temperature, top-p 1; eos switched off so every row writes all its tokens.
2. generate: Hugging Face `model.generate` on the same ids, the same temperature, top-p 1, top-k off and
   `min_new_tokens` equal to `max_new_tokens`: the same work. Printed beside: sampler / generate.
3. train step: `score.trainer.Trainer` with the default `TrainConfig` (LoRA r16 on every projection, KL on) on the
   sampler's own samples; tokens are the padded tokens its forwards see, prompts included.
MFU = 6 x N x train tokens/s / peak: the standard 6N approximation, N every parameter (embeddings included, the tied
LM head once). It leaves out attention's FLOPs and the KL reference forward (another 2N a token) and counts the LM
head at prompt positions, which the trainer skips (`logits_to_keep`): a convention to compare runs by, not an exact
count. Peak: the GPU's dense bf16 TFLOP/s from a table keyed by its name; a large bf16 matmul's achieved TFLOP/s is
printed beside it.
Vocabulary: the shapes keep Qwen's 151936 rows (the real embedding and LM-head cost); the embedded tokenizer is
SmolLM2's (49152), so prompt ids all lie below it and sampled ids above it decode to nothing (no text is read).
4. the first train step (old log-probs recomputed, every fourth written token masked as a tool output): its ratio
   (1 by construction), the sampler-trainer log-prob gap, the peak GPU memory beside `score plan`'s arithmetic for
   each --micro-batch-tokens, what the freed trainer leaves allocated, and a second sampler loaded and sampling after it
   in the same process (round 2's hand-over).
Leaves out: vLLM, gradient checkpointing, several GPUs. The defaults are sized for both shapes in under 8 minutes
on one H200.
Run: `python benchmarks/gpu_check.py [--shape qwen2.5-0.5b|qwen2.5-1.5b|qwen2.5-7b|tiny] [--device cuda|cpu]
[--new-tokens 256] [--batch 16] [--micro-batch-tokens 1024,4096]` (qwen2.5-7b: the 7B config's model,
configs/models/); `--shape tiny --device cpu` runs a small shape in float32 on a CPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from common import equal_prompts

from score.config import GenerateConfig, ModelConfig, TrainConfig
from score.models import SamplingParams
from score.models.embedded import ensure_embedded_model
from score.models.transformers_backend import TransformersBackend, left_pad
from score.trainer import Trainer, TrainSample

SHAPES = Path(__file__).resolve().parent / "shapes"
REAL_SHAPES = ("qwen2.5-0.5b", "qwen2.5-1.5b")
SEVEN_B = SHAPES.parents[1] / "configs/models/qwen2.5-7b-instruct/config.json"  # configs/qwen2.5-7b-vllm.yaml's model
TINY = {  # the test's shape: Qwen2's code path and vocabulary, a few million other weights
    "model_type": "qwen2",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-06,
}
# dense bf16 TFLOP/s from the vendors' sheets: the first entry whose words all appear in the device's name
PEAK_BF16_TFLOPS = (
    (("H100", "PCIe"), 756.0),
    (("H100",), 989.0),
    (("H200",), 989.0),
    (("A100",), 312.0),
    (("A10G",), 125.0),
    (("L4",), 121.0),
)
NO_CUDA = (
    "error: no CUDA device here; gpu_check times real shapes on a GPU. "
    "For the tiny CPU version run: python benchmarks/gpu_check.py --shape tiny --device cpu"
)


@dataclass
class Row:
    shape: str
    params: int
    sampler_tps: float
    generate_tps: float
    train_tps: float
    mfu: float | None  # None without a known peak
    first: dict  # the first train step: ratio, sampler gap, peak memory beside `score plan`'s, memory handed back


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # bf16 is slow on CPUs
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_tflops(name)
    shapes = [args.shape] if args.shape else list(REAL_SHAPES)
    print(
        f"device {name}, {str(dtype).removeprefix('torch.')}, batch {args.batch} x {args.prompt_tokens} prompt tokens"
    )
    achieved = f"; a bf16 8192^3 matmul achieves {matmul_tflops(device):.0f} TFLOP/s" if device.type == "cuda" else ""
    print(f"peak {'unknown' if peak is None else f'{peak:.0f} TFLOP/s (dense bf16, table)'}{achieved}")
    print("vocabulary: Qwen's 151936 rows kept; prompt ids from the embedded SmolLM2 tokenizer (49152)")
    print("MFU = 6 x N x train tokens/s / peak (N all parameters; attention FLOPs and the KL reference pass uncounted)")
    rows = [check_shape(s, args, device, dtype, peak) for s in shapes]
    print_table(rows, peak)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=[*REAL_SHAPES, "qwen2.5-7b", "tiny"], help="default: 0.5b and 1.5b")
    parser.add_argument(
        "--micro-batch-tokens",
        default="1024",
        help="comma-separated train.micro_batch_tokens: the first step's peak memory at each (timing at the first)",
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1 or cpu")
    parser.add_argument("--new-tokens", type=int, default=256, help="tokens each prompt writes")
    parser.add_argument("--batch", type=int, default=16, help="prompts sampled together; samples in a train step")
    parser.add_argument("--prompt-tokens", type=int, default=512, help="tokens of each prompt")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each part after its warm-up (best kept)")
    return parser.parse_args(argv)


def load_shape(shape: str):
    """The shape's `Qwen2Config`: a JSON file in benchmarks/shapes, or the in-script tiny one."""
    from transformers import AutoConfig

    path = SEVEN_B if shape == "qwen2.5-7b" else SHAPES / f"{shape}.json"
    spec = dict(TINY) if shape == "tiny" else json.loads(path.read_text())
    return AutoConfig.for_model(spec.pop("model_type"), **spec)


def check_shape(shape: str, args: argparse.Namespace, device: torch.device, dtype, peak: float | None) -> Row:
    """Sampler, generate and train step on one randomly initialised shape; the folder is deleted afterwards."""
    temperature = GenerateConfig().temperature
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        params = save_random_model(load_shape(shape), dtype, device, folder)
        backend = TransformersBackend(
            folder, dtype=str(dtype).removeprefix("torch."), device=str(device), batch_size=args.batch
        )
        backend.set_eos([])  # no row stops early: every row writes --new-tokens, as generate's min_new_tokens does
        prompts = equal_prompts(backend.tokenize, args.batch, args.prompt_tokens)
        samples, sampler_tps = time_sampler(backend, prompts, temperature, args)
        generate_tps = time_generate(backend.model, prompts, backend.pad_id, temperature, args)
        del backend
        _free(device)
        train_tps, first = time_train(folder, prompts, samples, temperature, args, device, dtype)
        first["handed_back_gib"] = _allocated(device)  # what the freed trainer left behind for the next sampler
        second = TransformersBackend(folder, dtype=str(dtype).removeprefix("torch."), device=str(device))
        second.sample(prompts[:2], SamplingParams(temperature=temperature, max_tokens=8))  # round 2, same process
        del second
    _free(device)
    mfu = 6 * params * train_tps / (peak * 1e12) if peak else None
    return Row(shape, params, sampler_tps, generate_tps, train_tps, mfu, first)


def save_random_model(config, dtype, device: torch.device, folder: str) -> int:
    """Write a randomly initialised model of `config` and the embedded tokenizer into `folder`; returns the
    parameter count (the tied LM head counted once)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with torch.device(device):  # initialised where it runs: a CPU init of 1.5B weights is slow
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(ensure_embedded_model()).save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    del model
    return params


def time_sampler(backend: TransformersBackend, prompts: list[list[int]], temperature: float, args):
    """The project's sampling loop on `prompts`: returns its samples and its best tokens/s."""
    backend.sample(prompts, SamplingParams(temperature=temperature, max_tokens=8))  # warm-up
    best, samples = 0.0, []
    for r in range(args.repeats):
        params = SamplingParams(temperature=temperature, max_tokens=args.new_tokens, seed=r)
        before = backend.usage.completion_tokens
        out, seconds = _timed(lambda p=params: backend.sample(prompts, p), backend.device)
        best = max(best, (backend.usage.completion_tokens - before) / seconds)
        samples = [row[0] for row in out]
    return samples, best


def time_generate(model, prompts: list[list[int]], pad_id: int, temperature: float, args) -> float:
    """Hugging Face `generate` on the same ids and the same number of new tokens: best tokens/s."""
    ids, mask = (t.to(model.device) for t in left_pad(prompts, pad_id))  # (B, T)

    def run(new: int) -> int:
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            temperature=temperature,
            top_p=1.0,
            top_k=0,  # the sampler draws from the whole vocabulary; generate's default keeps the top 50
            max_new_tokens=new,
            min_new_tokens=new,
            pad_token_id=pad_id,
        )  # (B, T + new)
        return out[:, ids.shape[1] :].numel()

    run(8)  # warm-up
    best = 0.0
    for _ in range(args.repeats):
        written, seconds = _timed(lambda: run(args.new_tokens), model.device)
        best = max(best, written / seconds)
    return best


def time_train(folder: str, prompts, samples, temperature: float, args, device: torch.device, dtype):
    """The project's train step (default TrainConfig: LoRA, KL on; old log-probs recomputed) on the sampler's samples,
    every fourth written token masked as a tool's output would be: best padded tokens/s, and the first step's ratio,
    sampler gap and peak memory beside `score plan`'s arithmetic for the same micro-batch."""
    model_cfg = ModelConfig(path=folder, dtype=str(dtype).removeprefix("torch."), device=str(device), threads=None)
    cfg = TrainConfig(batch_size=len(samples), recompute_old_logprobs=True)
    trainer = Trainer(model_cfg, cfg, folder, None, 0)
    batch = [
        TrainSample("solver", p, s.token_ids, s.logprobs, 1.0 if b % 2 else -1.0, temperature=temperature,
                    mask=[int(j % 4 != 3) for j in range(len(s.token_ids))])
        for b, (p, s) in enumerate(zip(prompts, samples))
    ]  # fmt: skip
    role_weight = {"solver": 1.0, "evaluator": 0.5}
    [log] = trainer.train(batch, role_weight, total_steps=100)  # the first step, and the warm-up
    first = dict(ratio=log.ratio_mean, gap_mean=log.sampler_gap_mean, gap_max=log.sampler_gap_max, peaks=[])
    for tokens in [int(t) for t in args.micro_batch_tokens.split(",")]:  # peak memory of a step at each size
        trainer.cfg = cfg.model_copy(update={"micro_batch_tokens": tokens})
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer.train(batch, role_weight, total_steps=100)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        first["peaks"].append((tokens, peak, planned_train_gib(folder, model_cfg, trainer.cfg)))
    trainer.cfg = cfg.model_copy(update={"micro_batch_tokens": int(args.micro_batch_tokens.split(",")[0])})
    best = 0.0
    for _ in range(args.repeats + 1):  # a step is short: one more run than the sampling parts
        logs, seconds = _timed(lambda: trainer.train(batch, role_weight, total_steps=100), device)
        best = max(best, sum(log.padded_tokens for log in logs) / seconds)
    trainer = None  # freed before the next sampler loads (the lambdas above hold the name, not the object)
    _free(device)
    return best, first


def planned_train_gib(folder: str, model_cfg: ModelConfig, cfg: TrainConfig) -> float:
    """`score plan`'s train-step peak for this shape and micro-batch (GiB)."""
    from score.config import RunConfig
    from score.memory_plan import architecture, trainer_plan
    from score.trainer import LOGSOFTMAX_CHUNK

    run = RunConfig(model=model_cfg, train=cfg)
    arch = architecture(Path(folder) / "config.json", cfg.target_modules)
    return sum(line.gib for line in trainer_plan(run, arch, LOGSOFTMAX_CHUNK))


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 TFLOP/s of a GPU known by name; None when it is not in the table.

    >>> peak_tflops("NVIDIA H100 80GB HBM3"), peak_tflops("NVIDIA H100 PCIe"), peak_tflops("NVIDIA L40S")
    (989.0, 756.0, None)
    """
    words = set(re.split(r"[\s\-_]+", device_name))
    return next((tflops for keys, tflops in PEAK_BF16_TFLOPS if words.issuperset(keys)), None)


def matmul_tflops(device: torch.device, n: int = 8192, iters: int = 20) -> float:
    """TFLOP/s a large bf16 matmul achieves here: the practical ceiling beside the table's peak."""
    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)  # (n, n)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)  # (n, n)
    for _ in range(3):  # warm-up: cuBLAS picks its kernel
        a @ b

    def run() -> None:
        for _ in range(iters):
            a @ b

    _, seconds = _timed(run, device)
    return 2 * n**3 * iters / seconds / 1e12


def _timed(fn, device: torch.device):
    """`fn()` and its wall-clock seconds, the device synchronised on both sides."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _allocated(device: torch.device) -> float:
    """GiB the process holds on the GPU now (NaN on a CPU)."""
    return torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def print_table(rows: list[Row], peak: float | None) -> None:
    print("| shape | params | sampler tok/s | generate tok/s | sampler/generate | train tok/s | MFU | peak TFLOP/s |")
    print("|---|---|---|---|---|---|---|---|")
    shown_peak = "unknown" if peak is None else f"{peak:.0f}"
    for r in rows:
        mfu = "n/a" if r.mfu is None else f"{r.mfu:.1%}"
        print(
            f"| {r.shape} | {r.params / 1e6:.1f}M | {r.sampler_tps:.0f} | {r.generate_tps:.0f} | "
            f"{r.sampler_tps / r.generate_tps:.2f} | {r.train_tps:.0f} | {mfu} | {shown_peak} |"
        )
    print("\n| shape | first-step ratio | sampler gap mean / max | after train GiB |")
    print("|---|---|---|---|")
    for r in rows:
        f = r.first
        gap = f"{f['gap_mean']:.2e} / {f['gap_max']:.2e}"
        print(f"| {r.shape} | {f['ratio']:.4f} | {gap} | {f['handed_back_gib']:.2f} |")
    print("\n| shape | micro-batch tokens | train step peak GiB | score plan GiB |")
    print("|---|---|---|---|")
    for r in rows:
        for tokens, peak, plan in r.first["peaks"]:
            print(f"| {r.shape} | {tokens} | {peak:.2f} | {plan:.2f} |")


if __name__ == "__main__":
    raise SystemExit(main())
