"""Evaluator judgement spans with a shared prefix, packed (the prefix encoded once a row) beside unpacked, in one run.

The batch is shaped like the evaluator's judgement spans: `--prefixes` reports of `--prefix-tokens` tokens, each
followed by `--siblings` judgement suffixes of `--suffix-tokens` tokens and `--written` written tokens (random
ids: the cost does not depend on the text). Packed: the samples as the train stage gives them (`prefix_ids` set),
so each prefix and its siblings share one row with a block attention mask. Unpacked: the same samples with the
prefix folded into `prompt_ids`, one left-padded row each, as before packing. Both run what a train step runs per
micro-batch (`micro_batches` at `train.micro_batch_tokens`, the policy's `sample_logprobs`, `policy_loss`,
backward; no reference pass, no optimizer step), on the same LoRA model, and the written tokens' log-probs of
the two are compared. The defaults are cut to fit about 2 minutes on 2 CPU cores; the evaluator's usual shape is
`--prefixes 4 --prefix-tokens 600` (several minutes there, unpacked dominating).
Timings on a shared CPU swing with its load (printed beside them): compare the two passes of one run only.
Run: `python benchmarks/shared_prefix.py [--prefixes 1] [--siblings 12] [--prefix-tokens 400] [--threads 2]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from score.config import ModelConfig, TrainConfig
from score.models import resolve_model_path
from score.rl import policy_loss, token_weights
from score.trainer import Trainer, TrainSample, micro_batches, padded_tokens, sample_logprobs


def judgement_spans(args: argparse.Namespace) -> list[TrainSample]:
    """`prefixes` x `siblings` samples sharing their prefix, random ids, old log-probs filled in later."""
    g = torch.Generator().manual_seed(0)

    def ids(n: int) -> list[int]:
        return torch.randint(1000, 20000, (n,), generator=g).tolist()

    samples = []
    for _ in range(args.prefixes):
        prefix = ids(args.prefix_tokens)
        for k in range(args.siblings):
            suffix = ids(args.suffix_tokens + k % 3 - 1)  # a little spread in suffix lengths, as in real spans
            samples.append(TrainSample("evaluator", suffix, ids(args.written), [], 1.0 if k % 2 else -1.0, 0.7, prefix))
    return samples


def unpacked(samples: list[TrainSample]) -> list[TrainSample]:
    return [dataclasses.replace(s, prompt_ids=s.prefix_ids + s.prompt_ids, prefix_ids=[]) for s in samples]


def forward_backward(tr: Trainer, samples: list[TrainSample], grad: bool = True) -> tuple[float, int, torch.Tensor]:
    """Seconds, padded tokens and (S, L) log-probs (samples in input order) of one pass over `samples`."""
    agg = token_weights([len(s.token_ids) for s in samples], tr.cfg.aggregation)
    logps: dict[int, torch.Tensor] = {}
    padded = 0
    t0 = time.perf_counter()
    for chunk in micro_batches(samples, tr.cfg.micro_batch_tokens):
        rows = [[samples[i] for i in row] for row in chunk]
        flat = [i for row in chunk for i in row]
        with torch.set_grad_enabled(grad):
            logp, mask = sample_logprobs(tr.model, rows, tr.pad_id, tr.accelerator.device, tr.dtype)  # (S, L)
        padded += padded_tokens(rows)
        if grad:
            old = torch.zeros_like(logp)  # (S, L)
            for b, i in enumerate(flat):
                old[b, logp.shape[1] - len(samples[i].token_ids) :] = torch.tensor(samples[i].old_logprobs)
            adv = torch.tensor([samples[i].advantage for i in flat])  # (S,)
            w = mask * torch.tensor([agg[i] for i in flat])[:, None]  # (S, L)
            policy_loss(logp, old, None, adv, w, tr.cfg.clip_low, tr.cfg.clip_high, 0.0).loss.backward()
        logps.update({i: logp[b, mask[b]].detach() for b, i in enumerate(flat)})
    seconds = time.perf_counter() - t0
    tr.model.zero_grad(set_to_none=True)
    return seconds, padded, torch.nn.utils.rnn.pad_sequence([logps[i] for i in range(len(samples))], batch_first=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefixes", type=int, default=1)
    parser.add_argument("--siblings", type=int, default=12)
    parser.add_argument("--prefix-tokens", type=int, default=400)
    parser.add_argument("--suffix-tokens", type=int, default=40)
    parser.add_argument("--written", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=ModelConfig().threads, help="torch CPU threads (model.threads)")
    args = parser.parse_args()
    model_cfg = ModelConfig(threads=args.threads)
    tr = Trainer(model_cfg, TrainConfig(kl_coef=0.0), resolve_model_path(model_cfg), None, 0)
    packed = judgement_spans(args)
    _, _, fresh = forward_backward(tr, packed, grad=False)  # the old log-probs (and a warm-up)
    for s, row in zip(packed, fresh):
        s.old_logprobs = row[: len(s.token_ids)].tolist()
    plain = unpacked(packed)
    best: dict[str, tuple[float, int]] = {}
    logp: dict[str, torch.Tensor] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        for name, samples in (("packed", packed), ("unpacked", plain)):
            seconds, padded, logp[name] = forward_backward(tr, samples)
            best[name] = min(best.get(name, (seconds, padded)), (seconds, padded))
            loads.append(os.getloadavg()[0])
    print(
        f"{args.prefixes} prefixes x {args.siblings} siblings: prefix {args.prefix_tokens}, "
        f"suffix ~{args.suffix_tokens}, {args.written} written, temperature 0.7; "
        f"micro_batch_tokens {tr.cfg.micro_batch_tokens}, {torch.get_num_threads()} threads, best of {args.repeats}"
    )
    for name, (seconds, padded) in best.items():
        print(f"{name:8s} forward+backward: {seconds:7.2f} s  {padded:6d} padded tokens")
    print(
        f"unpacked / packed: {best['unpacked'][0] / best['packed'][0]:.2f}x time, "
        f"{best['unpacked'][1] / best['packed'][1]:.2f}x padded tokens"
    )
    print(f"max |logp packed - unpacked|: {(logp['packed'] - logp['unpacked']).abs().max().item():.2e}")
    print(
        f"load average (1 min) before and after each pass: {', '.join(f'{x:.2f}' for x in loads)} "
        f"on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
