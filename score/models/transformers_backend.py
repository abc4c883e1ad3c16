"""The `transformers` backend: CPU and GPU, left-padded batches, our own sampling loop.

Why a loop of our own instead of `generate()`: we need the log-prob of every sampled token under the
distribution it was drawn from (the trainer's importance ratios), per-row stop strings, and rows that
finish early leave the batch (their KV-cache rows are dropped), which `generate()` does not do and which
matters when report lengths vary. Prompts are sorted by length before batching so padding stays small.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from score.models.base import Prompt, Sample, SamplingParams, Usage, WrittenScore, written_score
from score.models.chat import ChatTokenizer
from score.progress import progress_bar
from score.scale import ScoreTokens

log = logging.getLogger(__name__)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows padded on the left into (B, T) ids and attention mask: every row ends at the last column,
    where generation continues (sampling) or the written tokens sit (training)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids, mask


def draw(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of `weights` (B, V), drawn with probability proportional to its weight: one uniform
    number per row against the row's cumulative sum (inverse CDF). `torch.multinomial` draws an exponential per
    vocabulary entry: about 20 ms of each decode step for 16 rows of 49k tokens on this CPU (profiled).
    Exact to float32 resolution: a token whose weight is under half the float32 spacing at its place in the
    cumulative sum (about 3e-8 of the total near its top) is never drawn, so at most V x 3e-8 of the mass (1.5e-3
    for 49k tokens; in practice the mass of tokens that improbable) is left out. A float64 sum and uniform would
    remove that, and change every seeded draw.

    >>> g = torch.Generator().manual_seed(0)
    >>> draw(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]), g).tolist()
    [1, 2]
    """
    cdf = weights.float().cumsum(-1)  # (B, V)
    u = torch.rand(weights.shape[0], 1, generator=generator).to(weights.device) * cdf[:, -1:]  # (B, 1) in [0, total)
    return torch.searchsorted(cdf, u, right=True).clamp(max=weights.shape[-1] - 1).squeeze(1)  # (B,)


@dataclass
class _Written:
    """What each row of a sampling batch has written so far (tokens, their log-probs, why it stopped), how many
    tokens back a stop string is looked for, and the progress callback (slots of max_tokens used or given up)."""

    tokens: list[list[int]]
    logps: list[list[float]]
    reasons: list[str]
    stop_window: int
    progress: Callable[[int], object]


class TransformersBackend(ChatTokenizer):
    name = "transformers"

    def __init__(
        self,
        path: str,
        *,
        adapter: str | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        batch_size: int = 16,
        threads: int | None = None,
        score_batch_size: int = 8,
    ):
        """Parameters: the model.* config fields this engine reads, as keywords, so tests and benchmarks build one
        without a config (`score.models.load_backend` passes them from one)."""
        from transformers import AutoModelForCausalLM

        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.score_batch_size = score_batch_size
        ChatTokenizer.__init__(self, path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(self.device)
        self.checkpoint = "base"
        if adapter:
            from peft import PeftModel

            # merged into the weights: the same function, without the LoRA matmuls at every sampled token
            self.model = PeftModel.from_pretrained(self.model, adapter).merge_and_unload()
            self.checkpoint = adapter
        self.model.eval()
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        )
        self.set_eos(self.model.generation_config.eos_token_id if self.model.generation_config else None)
        self.usage = Usage()

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = left_pad(rows, self.pad_id)
        return ids.to(self.device), mask.to(self.device)

    # ---- sampling --------------------------------------------------------------------------------------
    def sample(
        self, prompts: Sequence[Prompt], params: SamplingParams, desc: str = "", prefix: str | Sequence[str] = ""
    ) -> list[list[Sample]]:
        encoded = self.encode_prompts(prompts, prefix)
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # similar lengths share a batch
        per_batch = max(1, self.batch_size // params.n)  # whole prompts per batch: their n samples share one prefill
        out: list[list[Sample]] = [[] for _ in prompts]
        generator = torch.Generator(device="cpu").manual_seed(params.seed)
        t0 = time.perf_counter()
        # progress in token slots (sequences x max_tokens): moves every decoding step, and a sequence that
        # stops early hands back its unused slots at once
        with progress_bar(
            total=len(prompts) * params.n * params.max_tokens,
            desc=desc or "sampling",
            unit="tok",
            leave=False,
            disable=not desc,
        ) as bar:
            for start in range(0, len(order), per_batch):
                chunk = order[start : start + per_batch]
                samples = self._sample_batch([encoded[i] for i in chunk], params, generator, bar.update)
                for k, i in enumerate(chunk):
                    out[i] = samples[k * params.n : (k + 1) * params.n]
        self.usage.seconds += time.perf_counter() - t0
        self.usage.calls += 1
        self.usage.prompt_tokens += sum(len(e) for e in encoded) * params.n
        self.usage.completion_tokens += sum(len(s.token_ids) for row in out for s in row)
        return out

    @torch.inference_mode()
    def _sample_batch(
        self, rows: list[list[int]], params: SamplingParams, generator: torch.Generator, progress=lambda n: None
    ) -> list[Sample]:
        """Sample `params.n` continuations of each of `rows` (U prompts): returns U*n samples, prompt-major."""
        ids, mask = self._left_pad(rows)  # (U, T)
        cache = DynamicCache()
        logits = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,  # never the (U, T, V) logits of the prompt
        ).logits[:, -1, :]  # (U, V)
        if params.n > 1:  # the n samples of a prompt share its prefill: copy the cache rows, not the compute
            cache.batch_repeat_interleave(params.n)
            logits, mask = logits.repeat_interleave(params.n, 0), mask.repeat_interleave(params.n, 0)  # (B=U*n, .)
            rows = [r for r in rows for _ in range(params.n)]
        step_pos = mask.sum(-1, keepdim=True) - 1  # (B, 1) position of the last prompt token
        alive = list(range(len(rows)))  # batch row -> original row, shrinks as rows finish
        step_ids: torch.Tensor | None = None  # (B, 1) the token sampled at the previous step
        stop_window = max((len(self.tokenize(s)) for s in params.stop), default=0) + 2
        w = _Written([[] for _ in rows], [[] for _ in rows], ["length"] * len(rows), stop_window, progress)
        for step in range(params.max_tokens):
            if step > 0:
                logits = self.model(
                    input_ids=step_ids,
                    attention_mask=mask,
                    position_ids=step_pos,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                ).logits[:, -1, :]  # (B, V)
            logits = logits.float()
            scaled = logits / params.temperature if params.temperature > 0 else logits
            logprobs = torch.log_softmax(scaled, dim=-1)  # (B, V) the distribution sampled from: what the trainer sees
            nxt = self._pick(logits, params, generator)  # (B,)
            picked = logprobs.gather(1, nxt[:, None]).squeeze(1)  # (B,)
            keep = self._record(w, alive, nxt, picked, params)
            progress(len(alive))
            if not keep:
                break
            if len(keep) < len(alive):  # finished rows leave the batch: drop their cache rows
                idx = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(idx)
                mask, nxt, step_pos = mask[idx], nxt[idx], step_pos[idx]
                alive = [alive[b] for b in keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # (B, T+1)
            step_ids = nxt[:, None]  # (B, 1)
            step_pos = step_pos + 1  # (B, 1)
        return [self._finish(rows[r], w.tokens[r], w.logps[r], w.reasons[r], params.stop) for r in range(len(rows))]

    def _record(self, w: _Written, alive: list[int], nxt, picked, params: SamplingParams) -> list[int]:
        """Append each live row's sampled token (`nxt`) and its log-prob (`picked`); mark the rows that stopped.
        Returns the batch rows that go on."""
        tokens, logps, reasons, stop_window, progress = w.tokens, w.logps, w.reasons, w.stop_window, w.progress
        keep = []
        for b, row in enumerate(alive):
            tok = int(nxt[b])
            tokens[row].append(tok)
            logps[row].append(float(picked[b]))
            if tok in self.eos_ids:
                reasons[row] = "stop"
            elif params.stop and any(s in self.decode(tokens[row][-stop_window:]) for s in params.stop):
                reasons[row] = "stop"
            else:
                keep.append(b)
                continue
            progress(params.max_tokens - len(tokens[row]))  # the slots this finished row will not use
        return keep

    def _pick(self, logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> torch.Tensor:
        if params.temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / params.temperature, dim=-1)  # (B, V)
        if params.top_p >= 1.0:
            return draw(probs, generator)
        # Exact nucleus sampling without sorting the whole vocabulary each step: the nucleus almost always
        # lies inside the top 256 tokens; when it does not (a very flat row), sort everything.
        k = probs.shape[-1] if probs.shape[-1] <= 256 else 256
        top, idx = probs.topk(k, dim=-1)  # (B, k), descending
        if not bool((top.sum(-1) >= params.top_p).all()):
            top, idx = probs.sort(dim=-1, descending=True)  # (B, V)
        top = top.masked_fill(top.cumsum(-1) - top > params.top_p, 0.0)  # keep the smallest prefix reaching top_p
        return idx.gather(1, draw(top, generator)[:, None]).squeeze(1)

    def _finish(
        self, prompt: list[int], toks: list[int], logps: list[float], reason: str, stop: tuple[str, ...]
    ) -> Sample:
        text = self.decode(toks)
        if reason == "stop" and stop:
            ends = [text.find(s) + len(s) for s in stop if s in text]
            if ends:
                text = text[: min(ends)]
        return Sample(text=text, token_ids=toks, logprobs=logps, finish_reason=reason, prompt_tokens=len(prompt))  # type: ignore[arg-type]

    # ---- scoring ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, prompts: Sequence[str], continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(prompts), self.score_batch_size):
            ps, cs = (
                prompts[start : start + self.score_batch_size],
                continuations[start : start + self.score_batch_size],
            )
            rows = [self.tokenize(p) + list(c) for p, c in zip(ps, cs)]
            ids, mask = self._left_pad(rows)
            keep = max(len(c) for c in cs) + 1
            logits = self.model(
                input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), logits_to_keep=keep
            ).logits.float()  # (B, L+1, V): only the continuation's positions, never the whole (B, T, V)
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, L, V) position t predicts token t+1
            for b, c in enumerate(cs):
                if not c:
                    out.append([])
                    continue
                target = torch.tensor(list(c), device=self.device)  # (l,)
                lp = logprobs[b, logprobs.shape[1] - len(c) :].gather(1, target[:, None]).squeeze(1)  # (l,)
                out.append(lp.tolist())
        return out

    # ---- next-token distributions (judging) --------------------------------------------------------------
    @torch.inference_mode()
    def next_token_logprobs(
        self, prefix: str, suffixes: Sequence[str], candidates: Sequence[int], then: int | None = None
    ) -> list[list[float]] | tuple[list[list[float]], list[list[float]]]:
        """Log-probs of `candidates` as the next token after `prefix + suffix`, for each suffix.

        The prefix is encoded once and its KV cache shared by every suffix (a report scored on many criteria
        pays for the report once). With `then`, also returns the candidates' log-probs one token later,
        after `then` was written (how "10" is told from "1" on a 0-10 scale).
        """
        cand = torch.tensor(list(candidates), device=self.device)
        first: list[list[float]] = []
        second: list[list[float]] = []
        for last, nxt in self._suffix_logits(prefix, suffixes, then):
            first += torch.log_softmax(last, -1)[:, cand].tolist()
            if nxt is not None:
                second += torch.log_softmax(nxt, -1)[:, cand].tolist()
        return (first, second) if then is not None else first

    @torch.inference_mode()
    def write_scores(
        self, prefix: str, suffixes: Sequence[str], answers: ScoreTokens, params: SamplingParams
    ) -> list[WrittenScore]:
        """Per suffix, an answer written after `prefix + suffix` (see `Backend.write_scores`): the first token drawn
        from the distribution restricted to the answer set, a second after `then` from ("0", close), from the forward
        that fed `then` (the read-off's, so a written "1" costs no extra forward)."""
        if params.temperature <= 0:
            raise ValueError("write_scores samples a trained action: temperature must be > 0")
        cand = list(answers.candidates)
        second = list(answers.second() or [])
        rng = random.Random(params.seed)
        out: list[WrittenScore] = []
        for last, nxt in self._suffix_logits(prefix, suffixes, answers.then):
            raw1 = torch.log_softmax(last, -1)[:, cand].tolist()  # (n, C) temperature 1: the read-off's
            raw2 = torch.log_softmax(nxt, -1) if nxt is not None else None  # (n, V)
            for b in range(last.shape[0]):
                after = raw2[b, cand].tolist() if raw2 is not None else None
                close = raw2[b, second].tolist() if raw2 is not None and second else None
                out.append(written_score(answers, raw1[b], after, close, params.temperature, rng))
        self.usage.completion_tokens += sum(len(w.token_ids) for w in out)
        return out

    def _suffix_logits(self, prefix: str, suffixes: Sequence[str], then: int | None):
        """Per batch of suffixes: the (n, V) float logits at the end of `prefix + suffix`, and with `then` the
        (n, V) logits one token later, after `then` (else None). The prefix's KV cache is computed once and
        copied per batch."""
        pre = self.tokenize(prefix)
        base = DynamicCache()
        self.model(
            input_ids=torch.tensor([pre], device=self.device), past_key_values=base, use_cache=True, logits_to_keep=1
        )
        self.usage.prompt_tokens += len(pre)
        for start in range(0, len(suffixes), self.batch_size):
            rows = [self.tokenize(s) for s in suffixes[start : start + self.batch_size]]
            self.usage.prompt_tokens += sum(len(r) for r in rows)
            n, width = len(rows), max(len(r) for r in rows)
            ids = torch.full((n, width), self.pad_id, dtype=torch.long)  # (n, L) right-padded: causal attention
            for i, r in enumerate(rows):  # ignores the pad
                ids[i, : len(r)] = torch.tensor(r)
            lengths = torch.tensor([len(r) for r in rows])  # (n,)
            mask = torch.cat(
                [torch.ones(n, len(pre), dtype=torch.long), (torch.arange(width)[None] < lengths[:, None]).long()], 1
            )
            cache = copy.deepcopy(base)
            cache.batch_repeat_interleave(n)
            positions = (len(pre) + torch.arange(width))[None].expand(n, width)
            logits = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                past_key_values=cache,
                use_cache=True,
            ).logits  # (n, L, V), L is a short suffix
            last = logits[torch.arange(n), lengths - 1].float()  # (n, V)
            yield last, (self._after(then, pre, lengths, mask, cache) if then is not None else None)

    def _after(self, then: int, pre: list[int], lengths: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
        """(n, V) logits one token after each row's suffix, `then` written there."""
        n, width = mask.shape[0], mask.shape[1] - len(pre)
        mask = torch.cat([mask, torch.ones(n, 1, dtype=torch.long)], 1)
        # the new token sits after the pad columns; mask and positions keep each row's own order
        mask[:, len(pre) :][torch.arange(width + 1)[None].expand(n, -1) >= lengths[:, None]] = 0
        mask[:, -1] = 1
        return (
            self.model(
                input_ids=torch.full((n, 1), then, device=self.device),
                attention_mask=mask.to(self.device),
                position_ids=(len(pre) + lengths)[:, None].to(self.device),
                past_key_values=cache,
                use_cache=True,
            )
            .logits[:, -1]
            .float()
        )  # (n, V)

    @torch.inference_mode()
    def choice_logprobs(self, prompts: Sequence[str], candidates: Sequence[int]) -> list[list[float]]:
        """Log-probs of `candidates` as the next token after each prompt (left-padded batches)."""
        cand = torch.tensor(list(candidates), device=self.device)
        out: list[list[float]] = []
        for start in range(0, len(prompts), self.batch_size):
            ids, mask = self._left_pad([self.tokenize(p) for p in prompts[start : start + self.batch_size]])
            logits = (
                self.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    logits_to_keep=1,
                )
                .logits[:, -1]
                .float()
            )  # (B, V)
            out += torch.log_softmax(logits, -1)[:, cand].tolist()
        return out
