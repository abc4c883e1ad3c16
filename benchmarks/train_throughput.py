"""Train stage tokens/s beside a plain forward-and-backward pass of the same model on the same batch, in one run.

The batch: `--batch` samples shaped like the solver's report spans (a prompt with numbered sources, then
the written report), `--tokens` tokens each. Plain: the same LoRA model, `model(input_ids, labels=...)`
(the causal-LM loss over the written tokens, as a first training script would do it) and `backward()`.
Train step: `score.trainer.Trainer` on the same samples: reference pass with the adapter off (KL term
on), policy pass, clipped loss, backward, gradient clip, AdamW step. Both count the same padded tokens.
Target: the train step keeps at least 0.7 of plain's tokens/s with the KL term on. Beside them, the KL-off step
with the whole logits made by the forward (`Trainer.head` None, as under FSDP) against the output layer applied
a chunk of positions at a time (the default: its matmul is made again in backward, the price of its memory).
Run: `python benchmarks/train_throughput.py [--batch 8] [--tokens 384] [--repeats 3]`; prints the figures and writes
them as a record (benchmarks/records/, rendered into docs/measurements.md).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import write_record

from score.config import ModelConfig, TrainConfig
from score.models import resolve_model_path
from score.trainer import Trainer, TrainSample, written_logprobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=384, help="tokens per sample, prompt and written part together")
    parser.add_argument("--written", type=int, default=160, help="of which written (trainable)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    args.load_at_start = os.getloadavg()
    model_cfg = ModelConfig()
    trainers = {
        kl: Trainer(
            model_cfg,
            TrainConfig(batch_size=args.batch, kl_coef=kl, micro_batch_tokens=args.batch * args.tokens),
            resolve_model_path(model_cfg),
            None,
            0,
        )
        for kl in (0.02, 0.0)
    }
    tr = trainers[0.02]
    g = torch.Generator().manual_seed(0)
    samples = []
    for b in range(args.batch):
        ids = torch.randint(1000, 20000, (args.tokens,), generator=g).tolist()
        samples.append(
            TrainSample(
                "solver",
                ids[: args.tokens - args.written],
                ids[args.tokens - args.written :],
                [],
                1.0 if b % 2 else -1.0,
            )
        )
    with torch.no_grad():
        logp, _ = written_logprobs(
            tr.model, [(s.prompt_ids, s.token_ids) for s in samples], tr.pad_id, tr.accelerator.device
        )
    for s, row in zip(samples, logp):
        s.old_logprobs = row[-len(s.token_ids) :].tolist()
    ids = torch.tensor([s.prompt_ids + s.token_ids for s in samples])  # (B, T) equal lengths: no padding
    labels = ids.clone()
    labels[:, : args.tokens - args.written] = -100  # loss on the written tokens only

    def plain() -> float:
        model = trainers[0.0].model
        t0 = time.perf_counter()
        model(input_ids=ids, labels=labels).loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    def step(kl: float, whole: bool = False) -> float:
        trainer, head = trainers[kl], trainers[kl].head
        trainer.head = None if whole else head
        t0 = time.perf_counter()
        trainer.train(samples, {"solver": 1.0, "evaluator": 0.5}, total_steps=100)
        trainer.head = head
        return time.perf_counter() - t0

    plain(), step(0.02), step(0.0), step(0.0, whole=True)  # warm-up
    times = {"plain": [], "kl": [], "nokl": [], "whole": []}
    for _ in range(args.repeats):  # interleaved, so drift hits all four alike
        times["plain"].append(plain())
        times["kl"].append(step(0.02))
        times["nokl"].append(step(0.0))
        times["whole"].append(step(0.0, whole=True))
    tokens = args.batch * args.tokens
    best = {k: min(v) for k, v in times.items()}
    print(
        f"batch {args.batch} x {args.tokens} tokens ({args.written} written), LoRA r={tr.cfg.lora_rank}, "
        f"{tr.trainable_parameters():,} trainable, {torch.get_num_threads()} threads, best of {args.repeats}"
    )
    print(f"plain forward+backward      : {best['plain']:6.2f} s  {tokens / best['plain']:7.0f} tok/s")
    print(f"train step, KL on (k3, ref) : {best['kl']:6.2f} s  {tokens / best['kl']:7.0f} tok/s")
    print(f"train step, KL off          : {best['nokl']:6.2f} s  {tokens / best['nokl']:7.0f} tok/s")
    print(f"train step / plain, KL on : {best['plain'] / best['kl']:.2f}  (target >= 0.7)")
    print(f"train step, KL off, whole logits: {best['whole']:6.2f} s  {tokens / best['whole']:7.0f} tok/s")
    print(f"train step / plain, KL off: {best['plain'] / best['nokl']:.2f}")
    print(f"output layer in chunks / whole logits, KL off: {best['whole'] / best['nokl']:.2f} of the speed")
    figures = {f"{k}_seconds": round(v, 3) for k, v in best.items()} | {
        "tokens_per_step": tokens,
        "written_per_sample": args.written,
        "train_over_plain_kl_on": round(best["plain"] / best["kl"], 3),
        "train_over_plain_kl_off": round(best["plain"] / best["nokl"], 3),
        "chunked_output_layer_over_whole_logits_speed": round(best["whole"] / best["nokl"], 3),
    }
    print(f"record: {write_record('train_throughput', args, None, figures)}")


if __name__ == "__main__":
    main()
