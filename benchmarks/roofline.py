"""Roofline: this machine's memory bandwidth and fp32 matmul throughput, and each hot path's achieved rate beside
the bound those two numbers give, as a fraction.

The machine, at the config's `model.threads`: bandwidth is a large tensor copy (bytes read + written per second);
compute the best fp32 matmul rate over a square 2048^3 product and the model's own MLP shape (4096 tokens x hidden
x intermediate), each the best of 10. The model: N_body weights outside the embedding (2 FLOPs each per token),
the tied LM head H = vocab x hidden (2 H FLOPs per token whose logits are computed), W bytes of weights, K bytes of
KV cache per token of context. Each hot path is timed after a warm-up, the best of `--repeats`:
- decode: `TransformersBackend.sample` of `--batch` prompts, `--new-tokens` each (eos off), its prefill taken out;
  tokens/s. A step reads every weight and each row's KV cache once and does 2 (N_body + H) FLOPs a row: bound
  batch / max((W + batch x context x K) / bandwidth, batch x 2 (N_body + H) / compute), context the mean length.
- prefill: one forward of `--batch` rows of `--prompt-tokens` tokens, logits of the last position only; tokens/s.
  Bound: compute / 2 N_body.
- judging behind a shared prefix: `next_token_logprobs`, one prefix of `--prompt-tokens` tokens then `--batch`
  criteria suffixes, as the evaluator scores a report; tokens encoded per second. Bound: compute / 2 N_body.
- train step: `score.trainer.Trainer` (the config's train section: LoRA, KL on) on `--batch` samples of
  `--prompt-tokens` prompt and `--new-tokens` written tokens; padded tokens/s. Bound: the least work a LoRA step
  with a KL reference does, 6 N_body a token (the reference forward, the policy forward, the backward through the
  frozen weights for the activations' gradients; LoRA's own matmuls are small) and 6 H per written token.
Attention's FLOPs are left out of every bound (a few percent of 2 N_body at these lengths for this model).
Run: `python benchmarks/roofline.py [--batch 16] [--new-tokens 64] [--prompt-tokens 256] [--set key=value ...]`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import torch
from common import best_seconds, equal_prompts

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
    backend = TransformersBackend(
        resolve_model_path(cfg.model), dtype=cfg.model.dtype, device=cfg.model.device, batch_size=args.batch
    )
    m = Shape.of(backend.model)
    bandwidth, compute = copy_bandwidth(args.copy_mb), matmul_flops(m.hidden, m.intermediate)
    print(
        f"machine: {torch.get_num_threads()} threads; copy bandwidth {bandwidth / 1e9:.1f} GB/s, fp32 matmul "
        f"{compute / 1e9:.1f} GFLOP/s; load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"model: N_body {m.body / 1e6:.1f}M, LM head {m.head / 1e6:.1f}M, {m.weight_bytes / 1e6:.0f} MB of "
        f"{cfg.model.dtype} weights, {m.kv_bytes / 1e3:.1f} kB of KV cache a token"
    )
    prompts = equal_prompts(backend.tokenize, args.batch, args.prompt_tokens)
    paths = [
        decode(backend, prompts, args, m, bandwidth, compute),
        prefill(backend, prompts, args, m, compute),
        judging(backend, prompts[0], args, m, compute),
        train_step(cfg, prompts, args, m, compute),
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
    return parser.parse_args()


def copy_bandwidth(mb: int, repeats: int = 5) -> float:
    """Bytes read + written per second by a copy of an `mb`-megabyte fp32 tensor."""
    src = torch.ones(mb * 2**20 // 4)
    dst = torch.empty_like(src)
    seconds = best_seconds(lambda: dst.copy_(src), repeats)
    return 2 * src.numel() * 4 / seconds


def matmul_flops(hidden: int, intermediate: int, repeats: int = 10) -> float:
    """The best fp32 FLOP/s over a 2048^3 matmul and the model's MLP shape (4096 tokens)."""
    best = 0.0
    for m, k, n in ((2048, 2048, 2048), (4096, hidden, intermediate)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        best = max(best, 2 * m * k * n / best_seconds(lambda a=a, b=b: a @ b, repeats))
    return best


@dataclass
class Shape:
    body: int  # weights outside the embedding: 2 FLOPs each per token
    head: int  # the (tied) LM head, vocab x hidden: 2 FLOPs each per token whose logits are computed
    weight_bytes: int
    kv_bytes: int  # KV cache per token of context, all layers
    hidden: int
    intermediate: int

    @classmethod
    def of(cls, model) -> Shape:
        c = model.config
        embed = model.get_input_embeddings().weight
        size = embed.element_size()
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        kv = c.num_hidden_layers * 2 * c.num_key_value_heads * head_dim * size
        body = sum(p.numel() for p in model.parameters()) - embed.numel()
        return cls(body, embed.numel(), weights, kv, c.hidden_size, c.intermediate_size)


def decode(backend, prompts, args, m: Shape, bandwidth: float, compute: float) -> Path:
    backend.set_eos([])  # every row writes --new-tokens
    params = SamplingParams(temperature=0.8, max_tokens=args.new_tokens, seed=0)
    seconds = best_seconds(lambda: backend.sample(prompts, params), args.repeats)
    prefill_seconds = best_seconds(lambda: _forward(backend, prompts), 1)  # the sample call's own prefill, taken out
    achieved = len(prompts) * args.new_tokens / max(seconds - prefill_seconds, 1e-9)
    rows, context = len(prompts), len(prompts[0]) + args.new_tokens / 2
    memory = (m.weight_bytes + rows * context * m.kv_bytes) / bandwidth
    flops = rows * 2 * (m.body + m.head) / compute
    why = "memory (weights and KV cache read once a step)" if memory >= flops else "compute"
    return Path(f"decode, batch {rows} (prefill taken out)", achieved, rows / max(memory, flops), why)


@torch.inference_mode()
def _forward(backend, rows: list[list[int]]) -> None:
    ids = torch.tensor(rows, device=backend.device)  # (B, T)
    backend.model(input_ids=ids, use_cache=False, logits_to_keep=1)


def prefill(backend, prompts, args, m: Shape, compute: float) -> Path:
    seconds = best_seconds(lambda: _forward(backend, prompts), args.repeats)
    return Path(
        f"prefill, {len(prompts)} x {args.prompt_tokens}",
        len(prompts) * len(prompts[0]) / seconds,
        compute / (2 * m.body),
        "compute",
    )


def judging(backend, prompt: list[int], args, m: Shape, compute: float) -> Path:
    prefix = backend.decode(prompt)
    suffixes = [
        f"\nCriterion {k}: does the report cite a source for each figure it gives? Score 0-10:"
        for k in range(args.batch)
    ]
    candidates = [backend.tokenize(str(d))[0] for d in range(10)]
    seconds = best_seconds(lambda: backend.next_token_logprobs(prefix, suffixes, candidates), args.repeats)
    tokens = len(backend.tokenize(prefix)) + sum(len(backend.tokenize(s)) for s in suffixes)
    return Path(f"judging, 1 prefix + {len(suffixes)} criteria", tokens / seconds, compute / (2 * m.body), "compute")


def train_step(cfg, prompts, args, m: Shape, compute: float) -> Path:
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

    seconds = best_seconds(step, args.repeats)
    share = args.new_tokens / (args.prompt_tokens + args.new_tokens)  # tokens whose logits the step computes
    return Path(
        f"train step, {len(prompts)} x {args.prompt_tokens}+{args.new_tokens}",
        tokens[-1] / seconds,
        compute / (6 * m.body + share * 6 * m.head),
        "compute",
    )


if __name__ == "__main__":
    main()
