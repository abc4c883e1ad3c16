"""Peers: each hot path beside what a user would pick instead, same model, same batch, same settings, in one run.

- train step vs TRL's `GRPOTrainer` (needs `trl`: run in `.venv-trl`, `make trl-env`; without it the row says so).
  The same samples (`--batch` x `--prompt-tokens` prompt + `--new-tokens` written, advantages +-1, old log-probs
  the policy's own) and the same settings: LoRA r16 alpha 32 on the same modules, KL (k3, beta = train.kl_coef) to
  the adapter-off base, DAPO token aggregation, clip 0.2 / 0.28, sampling temperature 0.8, AdamW at train.lr, the
  gradient norm clipped at 1. One optimizer step each: ours is `score.trainer.Trainer.train`; TRL's is what its
  training step runs on a generated batch: the reference log-probs (its `_get_per_token_logps_and_entropies`,
  adapter off), `compute_loss` (policy forward with entropies, its DAPO loss), backward, clip, AdamW step.
- sampler vs Hugging Face `generate`: `TransformersBackend.sample` and `model.generate` on the same `--batch`
  prompts, temperature 0.8, top-p 1, top-k off, `--new-tokens` each (eos off / `min_new_tokens`: the same work).
- judging behind a shared prefix vs each judgement with its own full prompt: one report (`--prompt-tokens`) and
  `--batch` criteria, the next-token log-probs of the score digits; `next_token_logprobs` encodes the report once
  (its KV cache shared), `choice_logprobs` encodes report + criterion for every criterion.
Each part is timed after a warm-up, the best of `--repeats`; ratio = this project's tokens/s / the peer's.
Run: `.venv-trl/bin/python benchmarks/peers.py [--batch 8] [--prompt-tokens 256] [--new-tokens 64]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from common import best_seconds, equal_prompts

from score.config import ModelConfig, TrainConfig
from score.models import SamplingParams, resolve_model_path
from score.models.transformers_backend import TransformersBackend, left_pad
from score.trainer import Trainer, TrainSample, lora_config, written_logprobs

TEMPERATURE = 0.8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = resolve_model_path(ModelConfig())
    backend = TransformersBackend(path, batch_size=args.batch)
    prompts = equal_prompts(backend.tokenize, args.batch, args.prompt_tokens)
    print(
        f"embedded model, fp32, {args.threads} threads; batch {args.batch} x {args.prompt_tokens} prompt tokens, "
        f"{args.new_tokens} new; best of {args.repeats}; load before {os.getloadavg()[0]:.2f}"
    )
    rows = [sampler_vs_generate(backend, prompts, args), judging_shared_vs_full(backend, prompts[0], args)]
    del backend
    rows.insert(0, train_vs_trl(path, prompts, args))
    print(f"load after {os.getloadavg()[0]:.2f}")
    print("| hot path | this project tok/s | peer | peer tok/s | ratio |")
    print("|---|---|---|---|---|")
    for name, ours, peer, theirs in rows:
        ratio = f"{ours / theirs:.2f}" if theirs else "-"
        print(f"| {name} | {ours:.0f} | {peer} | {theirs:.0f} | {ratio} |")


def sampler_vs_generate(backend: TransformersBackend, prompts, args) -> tuple[str, float, str, float]:
    backend.set_eos([])  # every row writes --new-tokens, as generate's min_new_tokens makes it
    params = SamplingParams(temperature=TEMPERATURE, max_tokens=args.new_tokens, seed=0)
    ours = best_seconds(lambda: backend.sample(prompts, params), args.repeats)
    ids, mask = left_pad(prompts, backend.pad_id)  # (B, T)

    def generate() -> None:
        backend.model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            temperature=TEMPERATURE,
            top_p=1.0,
            top_k=0,
            max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens,
            pad_token_id=backend.pad_id,
        )

    theirs = best_seconds(generate, args.repeats)
    tokens = len(prompts) * args.new_tokens
    return f"sampling, {len(prompts)} x {args.new_tokens} new", tokens / ours, "HF generate", tokens / theirs


def judging_shared_vs_full(backend: TransformersBackend, prompt: list[int], args) -> tuple[str, float, str, float]:
    prefix = backend.decode(prompt)
    suffixes = [
        f"\nCriterion {k}: does the report support each figure with a source? Score 0-10:" for k in range(args.batch)
    ]
    digits = [backend.tokenize(str(d))[0] for d in range(10)]
    ours = best_seconds(lambda: backend.next_token_logprobs(prefix, suffixes, digits), args.repeats)
    theirs = best_seconds(lambda: backend.choice_logprobs([prefix + s for s in suffixes], digits), args.repeats)
    judgements = len(suffixes)
    return (
        f"judging, 1 report x {judgements} criteria (judgements/s)",
        judgements / ours,
        "each with its full prompt",
        judgements / theirs,
    )


def train_vs_trl(path: str, prompts, args) -> tuple[str, float, str, float]:
    tokens = len(prompts) * (args.prompt_tokens + args.new_tokens)
    cfg = TrainConfig(batch_size=len(prompts), micro_batch_tokens=max(64, tokens))  # one micro-batch, as TRL's
    trainer = Trainer(ModelConfig(), cfg, path, None, 0)
    g = torch.Generator().manual_seed(0)
    written = [torch.randint(1000, 20000, (args.new_tokens,), generator=g).tolist() for _ in prompts]
    with torch.no_grad():  # the policy's own log-probs as the sampling ones: ratio 1 on the first step
        logp, _ = written_logprobs(
            trainer.model,
            list(zip(prompts, written)),
            trainer.pad_id,
            trainer.accelerator.device,
            [TEMPERATURE] * len(prompts),
        )
    olds = [row[-args.new_tokens :] for row in logp]
    advantages = [1.0 if b % 2 else -1.0 for b in range(len(prompts))]
    batch = [
        TrainSample("solver", p, w, old.tolist(), a, temperature=TEMPERATURE)
        for p, w, old, a in zip(prompts, written, olds, advantages)
    ]
    ours = best_seconds(lambda: trainer.train(batch, {"solver": 1.0, "evaluator": 1.0}, total_steps=100), args.repeats)
    name = f"train step, {len(prompts)} x {args.prompt_tokens}+{args.new_tokens} (LoRA, KL, DAPO)"
    try:
        step = trl_step(path, cfg, prompts, written, torch.stack(olds), advantages)
    except ImportError:
        return name, tokens / ours, "TRL GRPOTrainer: not installed (run in .venv-trl: make trl-env)", 0.0
    theirs = best_seconds(step, args.repeats)
    return name, tokens / ours, "TRL GRPOTrainer step", tokens / theirs


def trl_step(path: str, cfg: TrainConfig, prompts, written, olds: torch.Tensor, advantages):
    """One optimizer step of TRL's GRPOTrainer on these samples, as its training step runs it after generating."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    n = len(prompts)
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="peers-trl-"),
        loss_type="dapo",
        beta=cfg.kl_coef,
        epsilon=cfg.clip_low,
        epsilon_high=cfg.clip_high,
        temperature=TEMPERATURE,
        learning_rate=cfg.lr,
        max_grad_norm=cfg.max_grad_norm,
        per_device_train_batch_size=n,
        num_generations=n,
        max_completion_length=len(written[0]),
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
    )
    grpo = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
        reward_funcs=lambda completions, **_: [0.0] * len(completions),
        args=config,
        train_dataset=Dataset.from_dict({"prompt": ["-"] * n}),
        processing_class=AutoTokenizer.from_pretrained(path),
        peft_config=lora_config(cfg),  # the adapter the project's trainer makes
    )
    grpo.current_gradient_accumulation_steps = 1  # what its training loop sets: one micro-batch a step
    assert grpo.args.steps_per_generation == 1, grpo.args.steps_per_generation  # so DAPO divides by this batch's tokens
    model = grpo.model
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    prompt_ids = torch.tensor(prompts)  # (B, P)
    completion_ids = torch.tensor(written)  # (B, C)
    inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids,
        "completion_mask": torch.ones_like(completion_ids),
        "advantages": torch.tensor(advantages),
        "old_per_token_logps": olds,
        "num_items_in_batch": torch.tensor(float(completion_ids.numel())),
    }
    ids = torch.cat([prompt_ids, completion_ids], 1)  # (B, P + C)

    def step() -> None:
        with torch.no_grad(), model.disable_adapter():
            inputs["ref_per_token_logps"] = grpo._get_per_token_logps_and_entropies(
                model, ids, torch.ones_like(ids), completion_ids.shape[1]
            )[0]
        grpo.compute_loss(model, inputs).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


if __name__ == "__main__":
    main()
