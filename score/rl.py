"""The policy-gradient pieces of the train stage, as pure functions: advantages, the clipped objective, KL.

Advantages work on plain lists (one group = one query's K reports, or its J rubrics); the loss works on
padded tensors of one micro-batch. Both have doctests on hand-computed toy cases.

The objective, per trainable token t of sample i (A_i its advantage, r = exp(logp - logp_old)):

    pg_t = -min(r * A_i, clip(r, 1 - clip_low, 1 + clip_high) * A_i)
    kl_t = exp(ref - logp) - (ref - logp) - 1          (the k3 estimator: >= 0, unbiased, 0 when equal)
    loss = sum_t weight_t * (pg_t * is_t + kl_coef * kl_t)

with is_t = 1, or, when the ratio's denominators are the trainer's own log-probs recomputed at the round's start
(train.recompute_old_logprobs), the truncated importance weight min(p_trainer / p_sampler, train.tis_cap) of a
token drawn by an engine with other numerics (vLLM).

and `weight_t` carries the aggregation: "grpo" averages tokens within a sequence, then sequences;
"dapo" averages over every token of the batch (long sequences count by their length).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from score.rewards import group_std


@dataclass(frozen=True)
class GroupAdvantages:
    advantages: list[float]  # one per member, in input order
    mean: float
    std: float
    flat: bool  # zero spread: every advantage is 0, the group teaches nothing


def group_advantages(rewards: Sequence[float], normalize_std: bool = True, flat: float = 1e-6) -> GroupAdvantages:
    """Rewards of one group (a query's K reports, or its J rubrics) -> advantages: `r - mean`, divided by
    the group's population std when `normalize_std` (GRPO; Dr. GRPO leaves it out). A group whose std is at or
    below `flat` (reward.flat_spread, the one flat threshold) is flat.

    >>> g = group_advantages([1.0, 0.0, 0.5, 0.5])
    >>> [round(a, 3) for a in g.advantages], round(g.std, 4), g.flat
    ([1.414, -1.414, 0.0, 0.0], 0.3536, False)
    >>> group_advantages([1.0, 0.0], normalize_std=False).advantages
    [0.5, -0.5]
    >>> group_advantages([0.3, 0.3, 0.3]).flat, group_advantages([0.3, 0.3, 0.3]).advantages
    (True, [0.0, 0.0, 0.0])
    """
    n = len(rewards)
    mean = sum(rewards) / n if n else 0.0
    std = group_std(rewards)
    if n < 2 or std <= flat:
        return GroupAdvantages([0.0] * n, mean, std, True)
    scale = std if normalize_std else 1.0
    return GroupAdvantages([(r - mean) / scale for r in rewards], mean, std, False)


def token_weights(lengths: Sequence[int], aggregation: Literal["grpo", "dapo"]) -> list[float]:
    """Per-token weight of each sequence in one optimizer batch, so that the weighted token sum is the
    batch loss: grpo 1 / (n_seqs * len_i), dapo 1 / total_tokens.

    >>> token_weights([2, 6], "grpo")
    [0.25, 0.08333333333333333]
    >>> token_weights([2, 6], "dapo")
    [0.125, 0.125]
    """
    if aggregation == "grpo":
        return [1.0 / (len(lengths) * n) if n else 0.0 for n in lengths]
    total = sum(lengths)
    return [1.0 / total if total else 0.0 for _ in lengths]


def role_token_weights(
    lengths: Sequence[int], roles: Sequence[str], aggregation: Literal["grpo", "dapo"], shares: dict[str, float]
) -> list[float]:
    """Per-token weight of each sequence in one optimizer batch, normalised per role: each role's sequences are
    aggregated among themselves (`token_weights`), then scaled by the role's share, `shares[role]` over the sum of
    the shares of the roles present. A role's share of the update is then its configured one, whatever its token
    count (with one pooled `dapo` mean, a one-token judgement weighs as one token of a 400-token trajectory).

    >>> w = role_token_weights([400, 1, 1], ["solver", "evaluator", "evaluator"], "dapo", {"solver": 1, "evaluator": 1})
    >>> [round(x, 5) for x in w]  # each role holds half of the weight
    [0.00125, 0.25, 0.25]
    >>> role_token_weights([4, 4], ["evaluator", "evaluator"], "dapo", {"solver": 1.0, "evaluator": 0.5})
    [0.125, 0.125]
    """
    present = {r: shares[r] for r in dict.fromkeys(roles)}
    total = sum(present.values())
    out = [0.0] * len(lengths)
    for role, share in present.items():
        idx = [i for i, r in enumerate(roles) if r == role]
        for i, w in zip(idx, token_weights([lengths[i] for i in idx], aggregation)):
            out[i] = w * share / total if total else 0.0
    return out


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """The k3 estimate of KL(policy || reference) per token (Schulman, 2020): >= 0, and exactly 0 where
    the two log-probs agree.

    >>> k3(torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -1.0])).tolist()  # e^1 - 1 - 1
    [0.0, 0.7182817459106445]
    """
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


@dataclass
class LossParts:
    loss: torch.Tensor  # scalar, what backward() runs on
    pg: float  # the policy-gradient part, weighted like the loss
    kl: float  # mean k3 per trainable token (unweighted by kl_coef)
    clip_frac: float  # share of trainable tokens whose ratio was clipped (and the clip was active)
    ratio_mean: float
    tokens: int


def policy_loss(
    logp: torch.Tensor,  # (B, L) log-probs of the written tokens under the current policy
    old_logp: torch.Tensor,  # (B, L) at sampling time
    ref_logp: torch.Tensor | None,  # (B, L) under the reference, or None when kl_coef is 0
    advantages: torch.Tensor,  # (B,)
    weights: torch.Tensor,  # (B, L) per-token weight: aggregation x role weight; 0 on padding
    clip_low: float,
    clip_high: float,
    kl_coef: float,
    is_weight: torch.Tensor | None = None,  # (B, L) truncated importance weights on the policy gradient, or None
) -> LossParts:
    """The clipped surrogate plus the k3 penalty, summed with the given token weights.

    Parameters: the micro-batch's tensors, the three `train.*` knobs (clip_low, clip_high, kl_coef), then the
    importance weights of tokens drawn by another engine than the trainer's (`train.tis_cap`).

    On policy (logp == old_logp) the clip does nothing and the gradient is -A * grad logp:

    >>> lp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    >>> parts = policy_loss(lp, lp.detach(), None, torch.tensor([2.0]), torch.tensor([[0.5, 0.5]]), 0.2, 0.2, 0.0)
    >>> parts.loss.backward(); lp.grad.tolist(), parts.clip_frac
    ([[-1.0, -1.0]], 0.0)

    A ratio of 2 with a positive advantage is clipped at 1 + clip_high and carries no gradient:

    >>> import math
    >>> lp = torch.tensor([[math.log(2.0)]], requires_grad=True)
    >>> parts = policy_loss(lp, torch.zeros(1, 1), None, torch.tensor([1.0]), torch.ones(1, 1), 0.2, 0.28, 0.0)
    >>> round(parts.loss.item(), 4), parts.clip_frac
    (-1.28, 1.0)
    >>> parts.loss.backward(); lp.grad.tolist()
    [[0.0]]

    An importance weight scales its token's policy gradient, never its KL (tests/test_train.py measures it).
    """
    mask = weights > 0  # (B, L)
    ratio = torch.exp(logp - old_logp)  # (B, L)
    adv = advantages[:, None]  # (B, 1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    pg = -torch.minimum(unclipped, clipped)  # (B, L)
    if is_weight is not None:
        pg = pg * is_weight.detach()
    per_token = pg
    kl = torch.zeros_like(pg)
    if ref_logp is not None and kl_coef > 0:
        kl = k3(logp, ref_logp)
        per_token = pg + kl_coef * kl
    loss = (per_token * weights).sum()
    n = int(mask.sum())
    with torch.no_grad():
        was_clipped = (clipped < unclipped) & mask  # the clipped branch won: no gradient through this token
        return LossParts(
            loss=loss,
            pg=float((pg * weights).sum()),
            kl=float((kl * mask).sum()) / max(n, 1),
            clip_frac=float(was_clipped.sum()) / max(n, 1),
            ratio_mean=float((ratio * mask).sum()) / max(n, 1),
            tokens=n,
        )
