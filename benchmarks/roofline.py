"""Roofline: this machine's memory bandwidth and fp32 matmul throughput, and each hot path's achieved rate beside
the bound those two numbers give, as a fraction.

The machine, at the config's `model.threads`: bandwidth is a large tensor copy (bytes read + written per second),
compute an fp32 matmul of `--matmul-n` squared matrices (2 n^3 FLOPs). The hot paths, on the embedded model
(N parameters, W bytes of weights), each timed after a warm-up, the best of `--repeats`:
- decode: `TransformersBackend.sample` of `--batch` prompts, `--new-tokens` each (eos off: every row writes them
  all); tokens/s. A decode step reads every weight once and does 2 N FLOPs a row: bound
  batch / max(W / bandwidth, 2 N batch / compute).
- prefill: one forward of `--batch` rows of `--prompt-tokens` tokens (no KV cache kept); tokens/s. Bound:
  compute / 2 N (weights are read once for many tokens: compute-bound).
- judging behind a shared prefix: `next_token_logprobs`, one prefix of `--prompt-tokens` tokens then `--batch`
  criteria suffixes of about 40 tokens, as the evaluator scores a report; tokens encoded per second. Bound:
  compute / 2 N.
- train step: `score.trainer.Trainer` (the config's train section: LoRA, KL on) on `--batch` samples of
  `--prompt-tokens` prompt and `--new-tokens` written tokens; padded tokens/s. Bound: compute / 8 N (the policy's
  forward and backward, 6 N, and the KL reference forward, 2 N; LoRA skips the frozen weights' gradients, which
  leaves about 2 N of the backward undone, so the bound is a little loose).
Attention FLOPs are left out of every bound (at these lengths they are a few percent of 2 N for a 135M model).
Run: `python benchmarks/roofline.py [--batch 16] [--new-tokens 64] [--prompt-tokens 256] [--set key=value ...]`.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import torch

from score.config import load_config
from score.models import SamplingParams, resolve_model_path
from score.models.transformers_backend import TransformersBackend
from score.trainer import Trainer, TrainSample, written_logprobs


@dataclass
class Path:
    name: str
    achieved: float  # tokens/s
    bound: float  # tokens/s
    why: str  # which resource sets the bound


def main() -> None:
    args = _parse()
    cfg = load_config(args.config, args.overrides)
    torch.set_num_threads(cfg.model.threads or os.cpu_count() or 1)
    bandwidth, compute = copy_bandwidth(args.copy_mb), matmul_flops(args.matmul_n)
    backend = TransformersBackend(
        resolve_model_path(cfg.model), dtype=cfg.model.dtype, device=cfg.model.device, batch_size=args.batch
    )
    n = sum(p.numel() for p in backend.model.parameters())
    w = sum(p.numel() * p.element_size() for p in backend.model.parameters())
    print(
        f"machine: {torch.get_num_threads()} threads; copy bandwidth {bandwidth / 1e9:.1f} GB/s, fp32 matmul "
        f"{compute / 1e9:.1f} GFLOP/s (n={args.matmul_n}); load {os.getloadavg()[0]:.2f}"
    )
    print(f"model: {n / 1e6:.1f}M parameters, {w / 1e6:.0f} MB of {cfg.model.dtype} weights")
    prompts = make_prompts(backend, args.batch, args.prompt_tokens)
    paths = [
        decode(backend, prompts, args, n, w, bandwidth, compute),
        prefill(backend, prompts, args, n, compute),
        judging(backend, prompts[0], args, n, compute),
        train_step(cfg, prompts, args, n, compute),
    ]
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print("| hot path | achieved tok/s | bound tok/s | fraction | bound set by |")
    print("|---|---|---|---|---|")
    for p in paths:
        print(f"| {p.name} | {p.achieved:.0f} | {p.bound:.0f} | {p.achieved / p.bound:.2f} | {p.why} |")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--batch", type=int, default=16, help="rows decoded together (the default model.batch_size)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--copy-mb", type=int, default=1024, help="size of the tensor the bandwidth copy moves")
    parser.add_argument("--matmul-n", type=int, default=2048)
    return parser.parse_args()


def _best(fn, repeats: int) -> float:
    """The shortest wall-clock seconds of `repeats` calls of `fn` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def copy_bandwidth(mb: int, repeats: int = 5) -> float:
    """Bytes read + written per second by a copy of an `mb`-megabyte fp32 tensor."""
    src = torch.ones(mb * 2**20 // 4)
    dst = torch.empty_like(src)
    seconds = _best(lambda: dst.copy_(src), repeats)
    return 2 * src.numel() * 4 / seconds


def matmul_flops(n: int, repeats: int = 5) -> float:
    """fp32 FLOP/s of an n x n by n x n matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / _best(lambda: a @ b, repeats)


def make_prompts(backend: TransformersBackend, batch: int, tokens: int) -> list[list[int]]:
    """`batch` prompts of exactly `tokens` ids of real text (equal lengths: no padding)."""
    text = " ".join(f"Section {i}: wind turbines, solar cells and the storage of energy." for i in range(tokens))
    return [backend.tokenize(f"Report {b}. {text}")[:tokens] for b in range(batch)]


def decode(backend, prompts, args, n: int, w: int, bandwidth: float, compute: float) -> Path:
    backend.set_eos([])  # every row writes --new-tokens
    params = SamplingParams(temperature=0.8, max_tokens=args.new_tokens, seed=0)
    seconds = _best(lambda: backend.sample(prompts, params), args.repeats)
    prefill_seconds = _best(lambda: _forward(backend, prompts), 1)  # the sample call's own prefill, taken out
    achieved = len(prompts) * args.new_tokens / max(seconds - prefill_seconds, 1e-9)
    step = max(w / bandwidth, 2 * n * len(prompts) / compute)
    why = "memory (weights read once a step)" if w / bandwidth >= 2 * n * len(prompts) / compute else "compute"
    return Path(f"decode, batch {len(prompts)} (prefill taken out)", achieved, len(prompts) / step, why)


@torch.inference_mode()
def _forward(backend, rows: list[list[int]]) -> None:
    ids = torch.tensor(rows, device=backend.device)  # (B, T)
    backend.model(input_ids=ids, use_cache=False, logits_to_keep=1)


def prefill(backend, prompts, args, n: int, compute: float) -> Path:
    seconds = _best(lambda: _forward(backend, prompts), args.repeats)
    return Path(
        f"prefill, {len(prompts)} x {args.prompt_tokens}",
        len(prompts) * len(prompts[0]) / seconds,
        compute / (2 * n),
        "compute",
    )


def judging(backend, prompt: list[int], args, n: int, compute: float) -> Path:
    prefix = backend.decode(prompt)
    suffixes = [
        f"\nCriterion {k}: does the report cite a source for each figure it gives? Score 0-10:"
        for k in range(args.batch)
    ]
    candidates = [backend.tokenize(str(d))[0] for d in range(10)]
    seconds = _best(lambda: backend.next_token_logprobs(prefix, suffixes, candidates), args.repeats)
    tokens = len(backend.tokenize(prefix)) + sum(len(backend.tokenize(s)) for s in suffixes)
    return Path(f"judging, 1 prefix + {len(suffixes)} criteria", tokens / seconds, compute / (2 * n), "compute")


def train_step(cfg, prompts, args, n: int, compute: float) -> Path:
    trainer = Trainer(
        cfg.model, cfg.train.model_copy(update={"batch_size": len(prompts)}), resolve_model_path(cfg.model), None, 0
    )
    g = torch.Generator().manual_seed(0)
    written = [torch.randint(1000, 20000, (args.new_tokens,), generator=g).tolist() for _ in prompts]
    with torch.no_grad():  # the policy's own log-probs as the sampling ones: the first step's ratio is 1
        logp, _ = written_logprobs(
            trainer.model, list(zip(prompts, written)), trainer.pad_id, trainer.accelerator.device
        )
    batch = [
        TrainSample("solver", p, w, row[-len(w) :].tolist(), 1.0 if b % 2 else -1.0)
        for b, (p, w, row) in enumerate(zip(prompts, written, logp))
    ]
    role_weight = {"solver": 1.0, "evaluator": 1.0}
    tokens = []

    def step() -> None:
        tokens.append(sum(log.padded_tokens for log in trainer.train(batch, role_weight, total_steps=100)))

    seconds = _best(step, args.repeats)
    return Path(
        f"train step, {len(prompts)} x {args.prompt_tokens}+{args.new_tokens}",
        tokens[-1] / seconds,
        compute / (8 * n),
        "compute",
    )


if __name__ == "__main__":
    main()
