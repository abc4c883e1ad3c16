"""The trainer: one shared model, a clipped policy-gradient update on solver and evaluator samples.

What it does, per optimizer step: take `train.batch_size` samples, pack them into micro-batches of at
most `train.micro_batch_tokens` padded tokens, and for each micro-batch run the reference (the LoRA
adapter switched off, so no second copy; with full fine-tuning a frozen copy) without gradients, then the
policy with gradients, and accumulate `score.rl.policy_loss`; then clip the gradient norm, step AdamW.

Log-probs are computed only where loss is: the forward keeps the positions that predict written tokens
(`logits_to_keep`), never those of prompts and search results. It hands back their hidden states, not their
logits (the output layer is the identity for the call, `head`), and `token_logprobs` applies the output layer
and log-softmax (`gather - logsumexp` in fp32) a chunk of positions at a time under checkpoint, so no
(positions, vocabulary) tensor grows with the micro-batch. Under FSDP or DeepSpeed the wrapper holds the output
layer's weights only inside its forward: there the forward makes the logits whole. They are those of the
distribution each sample was drawn from, `log_softmax(logits / temperature)` (`TrainSample.temperature`), in the
policy and the reference forward alike, so a fresh sample's importance ratio is 1 at any temperature.

Samples that share a prefix (siblings: equal, non-empty `prefix_ids`, e.g. a dozen judgements of one report)
are packed, the prefix encoded once: one row `[prefix | s1 prompt, s1 written | s2 ... ]`, a 4D block mask
(each segment sees the prefix and itself, never another segment) and positions that restart at len(prefix)
for every segment, so each sibling's log-probs are those it would get alone (`packed_logprobs`). Batches keep
siblings adjacent (`shuffled`), micro-batches keep them in one row (`micro_batches`, split only when a row
would pass the token budget). Packing changes the cost, never the objective: weights, advantages, clip and
KL stay per sample. A micro-batch with no prefix in it takes the left-padded path it always has; one with any
lays every row out packed, so each micro-batch is one forward (under DDP each forward is a collective).

The same code runs single-process on a CPU and under `accelerate launch` (DDP, FSDP or DeepSpeed, chosen
in the accelerate config): each process takes its share of every batch's micro-batches, the loss is
scaled so the gradient average across processes is the batch loss, and only the main process writes.
Optimizer state is saved as safetensors (no pickle) when it is whole on each process (one process, DDP);
under FSDP or DeepSpeed ZeRO the optimizer is sharded and restarts each round (logged), weights are saved.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import random
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from score.checkpoints import OPTIMIZER_FILE, STATE_FILE
from score.config import ModelConfig, TrainConfig
from score.models import check_target_modules, linear_layer_names
from score.models.transformers_backend import left_pad
from score.progress import progress_bar
from score.rl import policy_loss, role_token_weights

log = logging.getLogger(__name__)


@dataclass
class TrainSample:
    role: str  # solver | evaluator
    prompt_ids: list[int]  # masked: no loss (with prefix_ids, only this sample's own part after the prefix)
    token_ids: list[int]  # what the model wrote: the only tokens with loss
    old_logprobs: list[float]  # at sampling time, one per token_ids: log_softmax(logits / temperature)
    advantage: float
    temperature: float = 1.0  # what the tokens were sampled at; the trainer divides its logits by it too
    prefix_ids: list[int] = field(default_factory=list)  # shared by siblings (equal prefix_ids): encoded once a row
    mask: list[int] | None = None  # per token_ids: 1 written (loss), 0 a tool's output (no loss); None: all written
    choices: list[list[int]] | None = None  # per token_ids: the answer set it was drawn from (None: the vocabulary)
    start_logprobs: list[float] | None = None  # per token_ids: the trainer's own at the round's start (it sets them)

    @property
    def written(self) -> int:
        """Tokens with loss."""
        return len(self.token_ids) if self.mask is None else sum(self.mask)

    def __post_init__(self):
        if not self.temperature > 0:  # also catches NaN
            raise ValueError(
                f"{self.role} sample writing {self.token_ids[:8]}... has temperature {self.temperature}: log-probs are "
                "taken at the sampling temperature, which must be > 0 (greedy spans have no sampled distribution "
                "to train on; leave them out)"
            )


@dataclass
class StepLog:
    step: int  # global optimizer step, counted over the campaign
    epoch: int
    samples: int
    tokens: int  # trainable tokens
    padded_tokens: int  # what the forwards processed (prompts included)
    loss: float
    pg: float
    kl: float
    clip_frac: float
    ratio_mean: float
    grad_norm: float
    lr: float
    seconds: float
    evaluator_share: float = 0.0  # the evaluator's share of this step's update, by weight
    evaluator_token_share: float = 0.0  # and of its trainable tokens, by count (what a pooled mean would give it)
    sampler_gap_mean: float = math.nan  # mean |trainer - sampler| log-prob at the round's start weights, per token
    sampler_gap_max: float = math.nan  # (NaN: not known this step: a later step without recompute_old_logprobs)
    sampler_gap_tokens: int = 0  # the written tokens they are over


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Learning rate of optimizer step `step` (0-based, counted over the campaign).

    >>> c = TrainConfig(lr=1.0, warmup_steps=2, schedule="cosine", min_lr_ratio=0.0)
    >>> [round(lr_at(s, c, 6), 3) for s in range(7)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant" or total_steps <= cfg.warmup_steps:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(total_steps - cfg.warmup_steps, 1))
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def shuffled(samples: Sequence[TrainSample], rng: random.Random) -> list[int]:
    """Sample indices in a random order that keeps siblings adjacent, so a batch cut from it holds whole sibling
    groups (one packed row each) rather than one sibling of many groups (each paying for its prefix); a group
    cut by a batch boundary is packed on both sides. With no prefixes this is `rng.shuffle` of the indices.

    >>> s = [TrainSample("solver", [0], [1], [0.0], 1.0, prefix_ids=[p] if p else []) for p in [0, 7, 0, 7, 8]]
    >>> shuffled(s, random.Random(0))
    [2, 0, 1, 3, 4]
    """
    groups: dict[tuple[int, ...] | int, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(tuple(s.prefix_ids) or i, []).append(i)  # a plain sample is a group of its own
    units = list(groups.values())
    rng.shuffle(units)
    return [i for unit in units for i in unit]


def micro_batches(samples: Sequence[TrainSample], budget: int) -> list[list[list[int]]]:
    """Sample indices packed into micro-batches of at most `budget` padded tokens (`padded_tokens`): each
    micro-batch is a list of rows, each row a list of indices, one for a plain sample and several for packed
    siblings (`_rows`). Widest rows first, so similar widths share a batch; a row wider than the budget goes alone.

    >>> s = [TrainSample("solver", [0] * p, [1] * c, [0.0] * c, 1.0) for p, c in [(10, 5), (2, 1), (10, 6), (3, 2)]]
    >>> micro_batches(s, 32)
    [[[2], [0]], [[3], [1]]]

    Three siblings of a 20-token prefix share one row of 20 + 3 * 4 tokens:

    >>> s += [TrainSample("evaluator", [0] * 3, [1], [0.0], 1.0, prefix_ids=[5] * 20) for _ in range(3)]
    >>> micro_batches(s, 32)
    [[[4, 5, 6]], [[2], [0]], [[3], [1]]]
    """
    rows = sorted(_rows(samples, budget), key=lambda r: -_row_width([samples[i] for i in r]))
    out: list[list[list[int]]] = []
    for row in rows:
        if out and padded_tokens([[samples[i] for i in r] for r in [*out[-1], row]]) <= budget:
            out[-1].append(row)
        else:
            out.append([row])
    return out


def _rows(samples: Sequence[TrainSample], budget: int) -> list[list[int]]:
    """The rows the forwards will see: a plain sample is a row of its own; siblings (equal, non-empty prefix_ids)
    share one packed row. A group whose row would pass `budget` is split into several rows, each encoding the
    prefix again, so that every row fits the budget and memory stays bounded (the prefix and a single segment
    wider than the budget make a row alone); those rows are then micro-batched like any other."""
    rows: list[list[int]] = []
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(samples):
        if s.prefix_ids:
            groups.setdefault(tuple(s.prefix_ids), []).append(i)
        else:
            rows.append([i])
    for group in groups.values():
        row: list[int] = []
        for i in group:
            if row and _row_width([samples[j] for j in [*row, i]]) > budget:
                rows.append(row)
                row = []
            row.append(i)
        rows.append(row)
    return rows


def _row_width(row: Sequence[TrainSample]) -> int:
    """Tokens of one row: a plain sample's prompt and written part, or the prefix and every sibling's segment."""
    return len(row[0].prefix_ids) + sum(len(s.prompt_ids) + len(s.token_ids) for s in row)


def padded_tokens(rows: Sequence[Sequence[TrainSample]]) -> int:
    """Tokens the forward of one micro-batch processes: every row padded to the widest (a packed row's width is
    its prefix and all its segments).

    >>> plain = TrainSample("solver", [0] * 6, [1] * 2, [], 1.0)
    >>> sib = TrainSample("evaluator", [0], [1], [], 1.0, prefix_ids=[9] * 8)
    >>> padded_tokens([[plain], [plain], [sib, sib, sib]])  # 3 rows x (8 + 3 x 2)
    42
    """
    return len(rows) * max(_row_width(r) for r in rows)


def lora_config(cfg: TrainConfig):
    """The peft LoRA config a fresh adapter is made with (`train.lora_*`, `train.target_modules`)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )


def written_logprobs(
    model,
    rows: Sequence[tuple[list[int], list[int]]],
    pad_id: int,
    device,
    temperatures: Sequence[float] | None = None,
    head: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of each row's written tokens given its prompt, at the row's sampling temperature (default 1),
    right-aligned: returns (B, L) log-probs and a (B, L) mask of real written tokens, L the longest written part.
    `head`: the model's output layer, applied a chunk of positions at a time (`output_layer`); None: the forward
    makes the logits of every kept position at once."""
    bad = [(i, t) for i, t in enumerate(temperatures or []) if not t > 0]
    if bad:
        raise ValueError(f"rows (index, temperature) {bad}: log-probs need the sampling temperature, > 0")
    L = max(len(c) for _, c in rows)
    ids, attn = left_pad([p + c for p, c in rows], pad_id)  # (B, T): written tokens end every row
    ids, attn = ids.to(device), attn.to(device)
    with _hidden_out(head):
        out = model(
            input_ids=ids,
            attention_mask=attn,
            position_ids=(attn.cumsum(-1) - 1).clamp(min=0),
            logits_to_keep=L + 1,
            use_cache=False,
        ).logits  # (B, L + 1, H or V): position j predicts token T-L+j; the prompt's are never made
    targets = ids[:, -L:]  # (B, L)
    temps = torch.tensor(temperatures or [1.0] * len(rows), device=device)  # (B,)
    logp = torch.stack([token_logprobs(out[b, :-1], targets[b], temps[b].expand(L), head) for b in range(len(rows))])
    lengths = torch.tensor([len(c) for _, c in rows], device=device)  # (B,)
    mask = torch.arange(L, device=device)[None] >= (L - lengths)[:, None]  # (B, L)
    return logp, mask


def packed_logprobs(
    model,
    rows: Sequence[Sequence[TrainSample]],
    pad_id: int,
    device,
    dtype: torch.dtype = torch.float32,
    head: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of packed siblings' written tokens, the prefix encoded once per row: (S, L) log-probs and mask,
    right-aligned like `written_logprobs`, S the samples in row order.

    Each row is `[prefix | s1 prompt, s1 tokens | s2 ... | pad]` (a plain sample: an empty prefix, one segment);
    a block mask lets every segment see the prefix and itself (causally), never another segment, and its positions
    continue from len(prefix), so each segment is computed as if it alone followed the prefix. `dtype` is the
    model's: sdpa wants its float mask in the query's dtype; `head` as in `written_logprobs`."""
    pack = _pack(rows, pad_id, device)
    seg = pack["segment"]  # (B, W): 0 prefix, k the k-th segment, -1 padding
    causal = torch.ones(seg.shape[1], seg.shape[1], dtype=torch.bool, device=device).tril()  # (W, W)
    allowed = causal & ((seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None]))  # (B, W, W) query x key
    # padding attends to the prefix and itself: no query row is all -inf, so no NaN; real tokens never see padding
    blocked = torch.full(allowed.shape, float("-inf"), dtype=dtype, device=device)  # in the model's dtype at once
    mask = torch.where(allowed, torch.zeros((), dtype=dtype, device=device), blocked)[:, None]  # (B, 1, W, W)
    keep = pack["keep"]  # (K,) sorted: every row's predicting positions (portable 1D `logits_to_keep`)
    with _hidden_out(head):
        out = model(
            input_ids=pack["ids"],
            attention_mask=mask,
            position_ids=pack["positions"],
            logits_to_keep=keep,
            use_cache=False,
        ).logits  # (B, K, H or V): only positions some row predicts a written token from
    picked = out[pack["row"], torch.searchsorted(keep, pack["at"])]  # (N, H or V) the written tokens' own
    logp = token_logprobs(picked, pack["target"], pack["temperature"], head)  # (N,)
    if pack["restricted"]:  # answers drawn from an answer set: normalised over that set, as they were sampled
        at, sets = zip(*pack["restricted"])
        idx = torch.tensor(at, device=device)  # (R,)
        logits = picked[idx] if head is None else head(picked[idx])  # (R, V)
        allowed = torch.zeros(logits.shape, dtype=torch.bool, device=device)  # (R, V)
        for r, ids in enumerate(sets):
            allowed[r, list(ids)] = True
        sub = (logits.float() / pack["temperature"][idx, None]).masked_fill(~allowed, float("-inf"))  # (R, V)
        own = sub.gather(-1, pack["target"][idx, None]).squeeze(-1) - torch.logsumexp(sub, dim=-1)  # (R,)
        logp = logp.index_put((idx,), own)
    return _right_align(logp, pack["lengths"])


LOGSOFTMAX_CHUNK = 1024  # written positions whose logits and fp32 log-softmax are made at once (again in backward)


def token_logprobs(
    x: torch.Tensor, targets: torch.Tensor, temperature: torch.Tensor, head: torch.nn.Module | None = None
) -> torch.Tensor:
    """(N, V) logits in the model's dtype, or (N, H) hidden states with `head` the output layer, (N,) targets and
    temperatures -> (N,) fp32 `log_softmax(logits / temperature)[target]`, LOGSOFTMAX_CHUNK positions at a time:
    under autograd each chunk is checkpointed, so its (chunk, V) logits and fp32 tensors are remade in backward and
    their memory does not grow with N (at 152k vocabulary, bf16 logits and their gradient alone would be about
    0.6 GB per 1,000 positions, the fp32 ones 2 GB)."""
    from torch.utils.checkpoint import checkpoint

    one = functools.partial(_logprobs, head=head)
    parts = []
    for i in range(0, len(targets), LOGSOFTMAX_CHUNK):
        args = tuple(t[i : i + LOGSOFTMAX_CHUNK] for t in (x, targets, temperature))
        parts.append(checkpoint(one, *args, use_reentrant=False) if torch.is_grad_enabled() else one(*args))
    return torch.cat(parts) if parts else x.new_zeros(0, dtype=torch.float32)


def _logprobs(x: torch.Tensor, targets: torch.Tensor, temperature: torch.Tensor, head=None) -> torch.Tensor:
    """`token_logprobs` of one chunk: gather - logsumexp, so no second (n, V) tensor is made."""
    logits = (x if head is None else head(x)).float() / temperature[:, None]  # (n, V)
    return logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def output_layer(model) -> torch.nn.Module | None:
    """The output layer of `model` (a transformers or peft model) for `head`, when the model's logits are that
    layer's output and nothing more; None for a model that changes them after it (a soft cap, a scale: Gemma 2,
    Cohere, Granite), checked on one short forward in eval mode (no dropout), not by name."""
    head, training = model.get_output_embeddings(), model.training
    ids = torch.tensor([[1, 2, 3]], device=next(model.parameters()).device)
    model.eval()
    with torch.no_grad():
        whole = model(input_ids=ids, logits_to_keep=1, use_cache=False).logits[0].float()  # (1, V)
        with _hidden_out(head):
            hidden = model(input_ids=ids, logits_to_keep=1, use_cache=False).logits[0]  # (1, H)
        same = hidden.shape != whole.shape and torch.allclose(head(hidden).float(), whole, rtol=1e-2, atol=1e-5)
    model.train(training)
    return head if same else None


@contextlib.contextmanager
def _hidden_out(head: torch.nn.Module | None):
    """While inside, `head` (the model's output layer) hands back its input: the forward's `.logits` are then the
    hidden states of the kept positions; `token_logprobs` applies `head` to them a chunk at a time."""
    if head is None:
        yield
        return
    head.forward = _identity  # an instance attribute: nn.Module.__call__ finds it before the class's forward
    try:
        yield
    finally:
        del head.forward


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _pack(rows: Sequence[Sequence[TrainSample]], pad_id: int, device) -> dict:
    """The packed layout of `rows`: ids, positions and segment ids (B, W, right-padded), and for each of the N
    written tokens in row order its row, the position predicting it, its id and temperature (N,), with each
    sample's written length (S,), the predicting positions sorted and once each (K,); and the written tokens
    drawn from an answer set, with their sets."""
    width = max(_row_width(r) for r in rows)
    ids, positions, segment = [], [], []
    row_of, at, target, temperature, lengths = [], [], [], [], []
    restricted: list[tuple[int, list[int]]] = []  # (index among the N written tokens, its answer set)
    for b, row in enumerate(rows):
        prefix = row[0].prefix_ids
        ids.append(list(prefix))
        positions.append(list(range(len(prefix))))
        segment.append([0] * len(prefix))
        for k, s in enumerate(row, start=1):
            if not prefix and not s.prompt_ids:
                raise ValueError(f"{s.role} sample writing {s.token_ids[:8]}... has no prompt: nothing predicts it")
            start = len(ids[-1]) + len(s.prompt_ids)  # where the written tokens begin in the row
            ids[-1] += s.prompt_ids + s.token_ids
            positions[-1] += range(len(prefix), len(prefix) + len(s.prompt_ids) + len(s.token_ids))
            segment[-1] += [k] * (len(s.prompt_ids) + len(s.token_ids))
            n = len(s.token_ids)
            restricted += [(len(target) + j, ids) for j, ids in enumerate(s.choices or [])]
            row_of += [b] * n
            # the token before each written one predicts it; with no prompt of its own, the prefix's last token
            at += [start - 1 + j if j or s.prompt_ids else len(prefix) - 1 for j in range(n)]
            target += s.token_ids
            temperature += [s.temperature] * n
            lengths.append(n)
        pad = width - len(ids[-1])
        ids[-1] += [pad_id] * pad
        positions[-1] += [0] * pad
        segment[-1] += [-1] * pad

    def tensor(x, dtype=torch.long):
        return torch.tensor(x, dtype=dtype, device=device)

    return dict(
        ids=tensor(ids),
        positions=tensor(positions),
        segment=tensor(segment),
        row=tensor(row_of),
        at=tensor(at),
        keep=tensor(sorted(set(at))),  # (K,): the positions some row predicts from, made here (no device sync)
        target=tensor(target),
        temperature=tensor(temperature, torch.float32),
        lengths=lengths,  # a list: the aligned width is read from it without a device sync
        restricted=restricted,
    )


def _right_align(flat: torch.Tensor, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) values, sample after sample, -> (S, L) right-aligned (zeros before each sample's start) and its mask.

    >>> _right_align(torch.tensor([1.0, 2.0, 3.0]), [1, 2])
    (tensor([[0., 1.],
            [2., 3.]]), tensor([[False,  True],
            [ True,  True]]))
    """
    L = max(lengths)
    starts = L - torch.tensor(lengths, device=flat.device)  # (S,)
    mask = torch.arange(L, device=flat.device)[None] >= starts[:, None]  # (S, L)
    out = torch.zeros(mask.shape, dtype=flat.dtype, device=flat.device).masked_scatter(mask, flat)  # (S, L)
    return out, mask


def sample_logprobs(
    model,
    rows: Sequence[Sequence[TrainSample]],
    pad_id: int,
    device,
    dtype: torch.dtype = torch.float32,
    head: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of the written tokens of every sample in `rows` (rows as `micro_batches` makes them), in row
    order, right-aligned: (S, L) and its mask. Rows without a prefix, alone, take the left-padded
    `written_logprobs` as they always have; once any row is packed, every row is laid out packed (a plain sample is
    a row with an empty prefix and one segment). Always one forward: under DDP every forward broadcasts the
    model's buffers, a collective, so every process must make as many as the others (two forwards for a mixed
    micro-batch on one process against one on another hang). A written token with an answer set (`choices`) gets
    its log-prob under the distribution restricted to that set, as it was drawn (`score.scale.restricted_draw`).
    `head`: the model's output layer, applied in chunks (`written_logprobs`)."""
    if not any(r[0].prefix_ids or s.choices for r in rows for s in r):  # answer sets take the packed path
        alone = [r[0] for r in rows]
        pairs = [(s.prompt_ids, s.token_ids) for s in alone]
        return written_logprobs(model, pairs, pad_id, device, [s.temperature for s in alone], head)
    return packed_logprobs(model, rows, pad_id, device, dtype, head)


def step_totals() -> dict:
    """What the micro-batches of one step add up (gap_max: a maximum, over processes too, not a sum)."""
    return dict(loss=0.0, pg=0.0, kl=0.0, clip=0.0, ratio=0.0, tokens=0, padded=0, gap=0.0, gap_tokens=0, gap_max=0.0)


class Trainer:
    """Holds the trainable model, its optimizer and the accelerate state for one train stage."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, base_path: str, resume: str | None, seed: int):
        from accelerate import Accelerator
        from transformers import AutoTokenizer

        self.cfg = cfg
        recompute = cfg.recompute_old_logprobs
        self.recompute = model_cfg.backend == "vllm" if recompute is None else recompute
        self.accelerator = Accelerator(cpu=model_cfg.device == "cpu")
        self.device = self.accelerator.device  # every tensor the trainer makes goes here (a test moves it)
        self.sharded = self.accelerator.distributed_type.name in ("FSDP", "DEEPSPEED")
        if model_cfg.threads and model_cfg.device == "cpu":
            torch.set_num_threads(model_cfg.threads)
        torch.manual_seed(seed)  # LoRA's A init and dropout
        self.rng = random.Random(seed)  # batch order
        dtype = self.dtype = getattr(torch, model_cfg.dtype)  # packed rows' attention masks are made in it
        self.tokenizer = AutoTokenizer.from_pretrained(base_path)
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        )
        self.reference = None
        with warnings.catch_warnings():  # peft asks transformers a deprecated question on every wrap
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = self._load(cfg, base_path, resume, dtype)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        self.param_names = [n for n, p in model.named_parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=cfg.lr,
            betas=tuple(cfg.betas),
            weight_decay=cfg.weight_decay,
        )
        self.step = self.round_start = 0  # round_start: the step the current train() call began at
        if resume:
            self.step = json.loads((Path(resume) / STATE_FILE).read_text())["step"]
            if (Path(resume) / OPTIMIZER_FILE).exists() and not self.sharded:
                _load_optimizer(optimizer, self.param_names, Path(resume) / OPTIMIZER_FILE)
            elif self.sharded:
                log.warning(
                    "optimizer state is sharded under %s: it restarts this round", self.accelerator.distributed_type
                )
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        if self.reference is not None:
            self.reference = self.reference.to(self.device)
        # the output layer applied in chunks, outside the forward; FSDP and DeepSpeed hold its weights only inside
        self.head = None if self.sharded else output_layer(self.unwrapped)
        self.reference_head = None if self.reference is None or self.sharded else output_layer(self.reference)
        self.model.train()

    def _load(self, cfg: TrainConfig, base_path: str, resume: str | None, dtype):
        from transformers import AutoModelForCausalLM

        if cfg.method == "full":
            if cfg.kl_coef > 0:  # full fine-tuning has no adapter to switch off: the reference is a frozen copy
                self.reference = (
                    AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype).eval().requires_grad_(False)
                )
            return AutoModelForCausalLM.from_pretrained(resume or base_path, dtype=dtype)
        from peft import PeftModel, get_peft_model

        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
        if resume:
            return PeftModel.from_pretrained(base, resume, is_trainable=True)
        check_target_modules(linear_layer_names(base), cfg.target_modules)
        return get_peft_model(base, lora_config(cfg))

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.unwrapped.parameters() if p.requires_grad)

    def _reference_logprobs(self, rows: list[list[TrainSample]]) -> torch.Tensor:
        with torch.no_grad():
            if self.reference is not None:
                model, head = self.reference, self.reference_head
                return sample_logprobs(model, rows, self.pad_id, self.device, self.dtype, head)[0]
            with self.unwrapped.disable_adapter():  # LoRA: the base weights are the reference, no second copy
                return sample_logprobs(self.model, rows, self.pad_id, self.device, self.dtype, self.head)[0]

    def train(
        self, samples: Sequence[TrainSample], role_weight: dict[str, float], total_steps: int, desc: str = ""
    ) -> list[StepLog]:
        """One pass (`train.epochs` passes) over `samples`; returns one log row per optimizer step."""
        cfg, acc = self.cfg, self.accelerator
        logs: list[StepLog] = []
        # progress in samples, moved after every micro-batch (an optimizer step can take minutes on a CPU)
        with progress_bar(
            total=len(samples) * cfg.epochs,
            desc=desc or "train",
            unit="sample",
            leave=False,
            disable=not desc or not acc.is_main_process,
        ) as bar:
            for s in samples:  # a sample trained again (another call) is recomputed at this call's weights
                s.start_logprobs = None
            orders = [shuffled(samples, self.rng) for _ in range(cfg.epochs)]
            self.round_start = self.step
            if self.recompute:  # the first step's samples, seen once, get theirs from that step's own forward
                self._start_logprobs(samples, set(orders[0][: cfg.batch_size]) if cfg.epochs == 1 else set())
            for epoch, order in enumerate(orders):
                for start in range(0, len(order), cfg.batch_size):
                    batch = [samples[i] for i in order[start : start + cfg.batch_size]]
                    logs.append(self._step(batch, role_weight, epoch, total_steps, bar.update))
                    bar.set_postfix(step=logs[-1].step, loss=f"{logs[-1].loss:.4f}", kl=f"{logs[-1].kl:.4f}")
        return logs

    def _step(
        self,
        batch: Sequence[TrainSample],
        role_weight: dict[str, float],
        epoch: int,
        total_steps: int,
        progress=lambda n: None,
    ) -> StepLog:
        cfg, acc = self.cfg, self.accelerator
        t0 = time.perf_counter()
        lr = lr_at(self.step, cfg, total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        agg = role_token_weights([s.written for s in batch], [s.role for s in batch], cfg.aggregation, role_weight)
        totals = step_totals()
        self.optimizer.zero_grad(set_to_none=True)
        for rows, real in self._share(micro_batches(batch, cfg.micro_batch_tokens)):
            part = [[batch[i] for i in row] for row in rows]
            self._micro_batch(part, [agg[i] for row in rows for i in row], real, totals)
            progress(sum(map(len, rows)) * acc.num_processes if real else 0)
        if acc.num_processes > 1:  # every process saw its share of the batch: sum the logged totals
            keys = [k for k in totals if k != "gap_max"]
            summed = acc.reduce(torch.tensor([float(totals[k]) for k in keys], device=self.device), reduction="sum")
            gap_max = acc.gather(torch.tensor([totals["gap_max"]], device=self.device)).max()  # (processes,) -> max
            totals = dict(zip(keys, summed.tolist()), gap_max=float(gap_max))
            for k in ("tokens", "padded", "gap_tokens"):
                totals[k] = int(totals[k])
        clipped = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        # DeepSpeed's engine clips by itself and accelerate returns None: the norm is then unknown here (NaN, logged)
        grad_norm = float("nan") if clipped is None else float(clipped)
        known = [] if clipped is None else [grad_norm]
        self._check_finite(f"loss {totals['loss']}, gradient norm {grad_norm}", totals["loss"], *known)
        weight = [a * s.written for a, s in zip(agg, batch)]  # each sample's share of the step's update
        self.optimizer.step()
        self.step += 1
        n = max(totals["tokens"], 1)
        return StepLog(
            step=self.step - 1,
            epoch=epoch,
            samples=len(batch),
            tokens=totals["tokens"],
            padded_tokens=totals["padded"],
            loss=totals["loss"],
            pg=totals["pg"],
            kl=totals["kl"] / n,
            clip_frac=totals["clip"] / n,
            ratio_mean=totals["ratio"] / n,
            grad_norm=grad_norm,
            lr=lr,
            seconds=time.perf_counter() - t0,
            evaluator_share=sum(x for x, s in zip(weight, batch) if s.role == "evaluator") / (sum(weight) or 1.0),
            evaluator_token_share=sum(s.written for s in batch if s.role == "evaluator")
            / max(sum(s.written for s in batch), 1),
            sampler_gap_mean=totals["gap"] / totals["gap_tokens"] if totals["gap_tokens"] else math.nan,
            sampler_gap_max=totals["gap_max"] if totals["gap_tokens"] else math.nan,
            sampler_gap_tokens=totals["gap_tokens"],
        )

    def _share(self, chunks: list) -> list[tuple[list, bool]]:
        """This process's micro-batches of `chunks`, (rows, real), padded with zero-weight stand-ins (one sample,
        `real` False) so that every process makes as many forwards as the others: each may be a collective."""
        acc = self.accelerator
        per_rank = math.ceil(len(chunks) / acc.num_processes)
        mine = [(c, True) for c in chunks[acc.process_index * per_rank : (acc.process_index + 1) * per_rank]]
        return mine + [([chunks[0][0][:1]], False)] * (per_rank - len(mine))

    def _start_logprobs(self, samples: Sequence[TrainSample], first: set[int]) -> None:
        """Each sample's `start_logprobs` but those of `first` (the indices the round's first step trains on: its
        own forward is at the same weights): no-grad forwards, each process its share of the micro-batches,
        gathered so that every process holds them all."""
        rest = [i for i in range(len(samples)) if i not in first]
        if not rest:
            return
        subset = [samples[i] for i in rest]
        found = []
        with torch.no_grad():
            for rows, real in self._share(micro_batches(subset, self.cfg.micro_batch_tokens)):
                part = [[subset[i] for i in row] for row in rows]
                logp, _ = sample_logprobs(self.model, part, self.pad_id, self.device, self.dtype, self.head)
                order = [i for row in rows for i in row]
                n = [len(subset[i].token_ids) for i in order]
                found += [(rest[i], logp[b, logp.shape[1] - n[b] :].tolist()) for b, i in enumerate(order) if real]
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            found = gather_object(found)
        for i, values in found:
            samples[i].start_logprobs = values

    def _check_finite(self, what: str, *values: float) -> None:
        """Stop the stage at the first non-finite loss or gradient norm (the same on every process: the loss is
        summed across them, the norm is the global one), before the update and before any checkpoint is written."""
        if not all(math.isfinite(v) for v in values):
            raise FloatingPointError(
                f"optimizer step {self.step}: {what} is not finite; stopped, no checkpoint written (lower train.lr, "
                "or check the samples' advantages and log-probs)"
            )

    def _micro_batch(self, rows: list[list[TrainSample]], agg: list[float], real: bool, totals: dict) -> None:
        """Forward and backward of one micro-batch of rows (plain samples or packed siblings; a zero-weight
        stand-in when not `real`); adds to `totals`. `agg` is per sample, in row order: packing changes the
        cost, never the per-sample objective."""
        cfg, acc = self.cfg, self.accelerator
        part = [s for row in rows for s in row]
        ref = self._reference_logprobs(rows) if cfg.kl_coef > 0 else None
        logp, mask = sample_logprobs(self.model, rows, self.pad_id, self.device, self.dtype, self.head)
        old, w = torch.zeros_like(logp), torch.zeros_like(logp)  # (B, L)
        # the trainer's own at the round's start weights: this forward's at the round's first step, else recomputed
        start = logp.detach().clone() if self.step == self.round_start else torch.full_like(logp, math.nan)
        L = logp.shape[1]
        for b, s in enumerate(part):
            n = len(s.token_ids)
            old[b, L - n :] = torch.tensor(s.old_logprobs, dtype=old.dtype, device=old.device)
            if s.start_logprobs is not None:
                start[b, L - n :] = torch.tensor(s.start_logprobs, dtype=old.dtype, device=old.device)
            w[b, L - n :] = agg[b] if real else 0.0  # the role's share is in agg (role_token_weights)
            if s.mask is not None:  # a trajectory: tool outputs are in the sequence and carry no loss
                w[b, L - n :] *= torch.tensor(s.mask, dtype=w.dtype, device=w.device)  # on the GPU: a CPU one fails
        w = w * mask
        known = (w > 0) & ~start.isnan()  # the weighted tokens whose start log-prob is known
        if self.recompute and not bool(known.eq(w > 0).all()):
            raise RuntimeError("a trained token has no recomputed old log-prob (train.recompute_old_logprobs): a bug")
        gap = (start - old).abs().where(known, torch.zeros((), dtype=old.dtype, device=old.device))
        totals["gap"] += float(gap.sum())
        totals["gap_max"] = max(totals["gap_max"], float(gap.max()) if gap.numel() else 0.0)
        totals["gap_tokens"] += int(known.sum())
        is_weight = None
        if self.recompute:  # the ratio measures policy change; the importance weight, the sampler's numerics
            start = start.where(known, old)  # (B, L): no NaN where the weight is 0
            is_weight = (start - old).exp().clamp(max=cfg.tis_cap) if cfg.tis_cap else None
            old = start
        adv = torch.tensor([s.advantage for s in part], dtype=logp.dtype, device=logp.device)  # (B,)
        parts = policy_loss(logp, old, ref, adv, w, cfg.clip_low, cfg.clip_high, cfg.kl_coef, is_weight)
        acc.backward(parts.loss * acc.num_processes)  # the cross-process gradient mean becomes the batch sum
        totals["loss"] += float(parts.loss.detach())
        totals["pg"] += parts.pg
        totals["kl"] += parts.kl * parts.tokens
        totals["clip"] += parts.clip_frac * parts.tokens
        totals["ratio"] += parts.ratio_mean * parts.tokens
        totals["tokens"] += parts.tokens
        totals["padded"] += real * padded_tokens(rows)

    def save(self, folder: Path) -> list[Path]:
        """Write the checkpoint (safetensors only) into `folder`; returns the files written (main process)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        state = acc.get_state_dict(self.model)  # gathered on the main process under FSDP / ZeRO-3
        if not acc.is_main_process:
            return []
        folder.mkdir(parents=True, exist_ok=True)
        model = self.unwrapped
        if self.cfg.method == "lora":  # adapter_model.safetensors + adapter_config.json, from the gathered state
            model.save_pretrained(folder, state_dict=state, safe_serialization=True)
            _sort_target_modules(folder / "adapter_config.json")
        else:
            model.save_pretrained(folder, state_dict=state, safe_serialization=True)
            self.tokenizer.save_pretrained(folder)  # a full checkpoint is a model folder of its own
        if not self.sharded:
            _save_optimizer(self.optimizer, self.param_names, folder / OPTIMIZER_FILE)
        (folder / STATE_FILE).write_text(json.dumps({"step": self.step, "method": self.cfg.method}, indent=2))
        return sorted(p for p in folder.rglob("*") if p.is_file())


def _sort_target_modules(path: Path) -> None:
    """peft writes `target_modules` from a set, in an order that changes from process to process: sorted, equal
    weights give equal bytes, so a retrain that changes nothing changes no fingerprint downstream."""
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def _save_optimizer(optimizer, names: list[str], path: Path) -> None:
    """AdamW's per-parameter tensors keyed by parameter name (safetensors holds tensors only; the
    hyper-parameters come from the config, the step count from trainer_state.json)."""
    tensors = {}
    state = optimizer.state_dict()["state"]
    for idx, name in enumerate(names):
        for key, value in state.get(idx, {}).items():
            tensors[f"{name}::{key}"] = (
                value.detach().reshape(-1).clone() if key == "step" else value.detach().contiguous()
            )
    save_file(tensors, str(path))


def _load_optimizer(optimizer, names: list[str], path: Path) -> None:
    tensors = load_file(str(path))
    current = optimizer.state_dict()
    state = {}
    for idx, name in enumerate(names):
        entry = {k.split("::", 1)[1]: v for k, v in tensors.items() if k.split("::", 1)[0] == name}
        if entry:
            if "step" in entry:
                entry["step"] = entry["step"].reshape(())
            state[idx] = entry
    if len(state) != sum(1 for k in {k.split("::", 1)[0] for k in tensors}):
        raise ValueError(
            f"{path} does not match this model's trainable parameters; was it written with another "
            "train.method or LoRA config?"
        )
    current["state"] = state
    optimizer.load_state_dict(current)
