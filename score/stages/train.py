"""train: one clipped policy-gradient update of the shared model on the round's solver and evaluator samples.

Samples (`samples.parquet`, a `role` column), each with its reward normalised within its group:
- solver: every span the solver wrote (plan, report) of every trajectory; group: the query's K reports;
- evaluator, rubrics: every rubric the evaluator wrote, rewarded by what its weights do (how its weighted score
  separates originals from their copies; a rubric that failed to parse earns `reward.failed_rubric`); group: the
  query's J rubrics;
- evaluator, judgements: every score the evaluator wrote that earned a reward (and the rationale before it, if
  `evaluate.rationale_tokens`); groups: a query's pair-credited judgements (a report's and its corrupted copy's on
  the dimensions the corruption damages, both sides) and its consistency-rewarded ones (K reports x criteria x
  passes members, so advantages are not sign-only);
- evaluator, verdicts: every evidence verdict the evaluator wrote on a claim with an anchor, and the one on the
  anchor, each with its two-sided pair credit; group: a query's verdicts (2 per checked claim);
- evaluator, follow-up queries: every search query the evaluator wrote to re-check a claim, rewarded by the
  change it made to the claim's separation from its anchor; group: a query's follow-ups.
Only written tokens carry loss; prompts, search results, reports and quoted evidence are masked. Scores and
verdicts carry their answer sets (`choices`): the trainer's log-softmax of those tokens is over the set they
were drawn from. Each role holds its `train.role_weight` share of a mixed batch's update, reported by weight
(`evaluator_update_share`); a round with no sample says so (`trained_nothing`, and a warning). A judgement's
prompt is stored as a prefix shared with its pass's other judgements (query, report, sibling, evidence) and its
own suffix: the trainer encodes the prefix once for all of them (likewise a claim and its anchor share the
passages they were checked against). A group whose rewards have a std at or below
`reward.flat_spread` (the one flat threshold, also the summary's saturation bar) gives no samples and is counted
(`solver_flat_groups`, `evaluator_flat_groups`): that count is the saturation the meta-harness fights.

Then `score.trainer.Trainer` runs `train.epochs` passes (importance ratios against the log-probs stored at
sampling time, under the temperature each span was sampled at; k3 KL to the base model with the adapter
switched off) and the checkpoint is written into `train/checkpoint/` as safetensors (LoRA adapter or full
weights, the optimizer state, the step). Round r+1's generate-reports and self-evaluate sample from it.

Run alone: `score stage train --round 0 [--force]` (needs the round's self-evaluate). Many GPUs:
`--set campaign.train_launcher='accelerate launch --config_file configs/accelerate/fsdp.yaml'` (the runner
launches it, `score.runner.launched`),
or by hand `accelerate launch --config_file configs/accelerate/fsdp.yaml -m score.cli stage train --round 0 --no-flow`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import random
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from score.config import TrainConfig
from score.pipeline import TrainStats
from score.runner import StageContext
from score.store.schemas import (
    CITATIONS,
    EVALUATOR_REWARDS,
    EVIDENCE,
    JUDGEMENT_SPANS,
    REPORTS,
    RUBRICS,
    SOLVER_REWARDS,
    TRAIN_SAMPLES,
    TRAIN_STEPS,
)

log = logging.getLogger(__name__)

JUDGEMENT_COLUMNS = [
    "query_id",
    "trajectory_id",
    "probe_kind",
    "pass_idx",
    "dimension",
    "criterion",
    "span",
    "rationale_span",
    "reward_kind",
    "reward",
]
EVIDENCE_COLUMNS = [
    "query_id",
    "trajectory_id",
    "probe_kind",
    "deeper",
    "claim_idx",
    "span",
    "reward",
    "anchor_span",
    "anchor_reward",
    "followup_span",
    "followup_reward",
]
CITATION_COLUMNS = ["query_id", "trajectory_id", "claim_idx", "span", "reward", "anchor_span", "anchor_reward"]


@dataclass
class TrainInputs:
    """What the train stage reads of a round, one table each (rows as dicts): the solver's reports and rewards, the
    rubrics and their rewards, the rewarded judgements, the evidence and citation verdicts."""

    reports: list[dict] = field(default_factory=list)
    solver_rewards: list[dict] = field(default_factory=list)
    rubrics: list[dict] = field(default_factory=list)
    evaluator_rewards: list[dict] = field(default_factory=list)
    judgements: list[dict] = field(default_factory=list)
    evidence: list[dict] = field(default_factory=list)
    citations: list[dict] = field(default_factory=list)


def build_samples(
    round_idx: int, inputs: TrainInputs, cfg: TrainConfig, flat: float, seed: int = 0
) -> tuple[list[dict], dict[str, int]]:
    """Rows of samples.parquet, and the group counts (how many groups, how many flat: std at or below `flat`) and
    the judgement and verdict samples `train.judgement_prefixes` and `train.verdict_prefixes` left out (drawn with
    `seed`). The verdicts of the citations (citations.parquet) join the evidence verdicts' pool; a react trajectory
    is one solver sample whose `mask` keeps its tool outputs out of the loss."""
    counts = _counts()
    rows = _solver_rows(inputs, cfg, flat, counts) + _rubric_rows(inputs, cfg, flat, counts)
    judgement_rows = _judgement_rows(inputs.judgements, cfg, flat, counts)
    kept = _some_prefixes(judgement_rows, cfg.judgement_prefixes, seed)
    counts["judgement_samples_left_out"] = len(judgement_rows) - len(kept)
    citations = [{**c, "citation": True, "probe_kind": "", "deeper": False} for c in inputs.citations]
    verdicts = _verdict_rows(inputs.evidence + citations, cfg, flat, counts)  # evidence and citation verdicts, one pool
    kept_verdicts = _some_prefixes(verdicts, cfg.verdict_prefixes, seed)
    counts["verdict_samples_left_out"] = len(verdicts) - len(kept_verdicts)
    out = rows + kept + kept_verdicts + _followup_rows(inputs.evidence, cfg, flat, counts)
    return [{"round": round_idx, **r} for r in out], counts


def _counts() -> dict[str, int]:
    return dict(solver_groups=0, solver_flat_groups=0, evaluator_groups=0, evaluator_flat_groups=0)


def _solver_rows(inputs: TrainInputs, cfg: TrainConfig, flat: float, counts: dict[str, int]) -> list[dict]:
    """Every span of every report of a group with spread (a plan span only with `train.train_plan`)."""
    rows: list[dict] = []
    reward_of = {r["trajectory_id"]: r["reward"] for r in inputs.solver_rewards}
    reports_of: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    for r in sorted(inputs.reports, key=lambda r: r["sample_idx"]):
        reports_of[r["query_id"]].append((r, reward_of[r["trajectory_id"]]))
    for q, r, reward, adv in _advantaged(reports_of, cfg, flat, "solver", counts):
        for span in r["spans"]:
            if span["token_ids"] and (span["name"] != "plan" or cfg.train_plan):
                rows.append(_row("solver", q, r["trajectory_id"], span, reward, adv))
    return rows


def _rubric_rows(inputs: TrainInputs, cfg: TrainConfig, flat: float, counts: dict[str, int]) -> list[dict]:
    """Every rubric of a query whose rubric rewards have spread."""
    evaluator_reward = {(e["query_id"], e["rubric_idx"]): e["reward"] for e in inputs.evaluator_rewards}
    rubrics_of: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    for rub in sorted(inputs.rubrics, key=lambda r: r["rubric_idx"]):
        rubrics_of[rub["query_id"]].append((rub, evaluator_reward[(rub["query_id"], rub["rubric_idx"])]))
    return [
        _row("evaluator", q, f"rubric-{rub['rubric_idx']}", rub["span"], reward, adv)
        for q, rub, reward, adv in _advantaged(rubrics_of, cfg, flat, "evaluator", counts)
        if rub["span"]["token_ids"]
    ]


def _judgement_rows(judgements: list[dict], cfg: TrainConfig, flat: float, counts: dict[str, int]) -> list[dict]:
    """The rewarded judgements (and the rationales written before them), advantaged within (query, reward kind)."""
    judged_of: dict[tuple[str, str], list[tuple[dict, float]]] = defaultdict(list)  # (query, reward kind)
    for j in judgements:
        if j["reward_kind"] and j["reward"] is not None:
            judged_of[(j["query_id"], j["reward_kind"])].append((j, j["reward"]))
    rows = []
    for (q, _), j, reward, adv in _advantaged(judged_of, cfg, flat, "evaluator", counts):
        if j["span"]["token_ids"]:
            criterion = hashlib.sha256(j["criterion"].encode()).hexdigest()[:8]  # J rubrics may judge a dimension twice
            source = (
                f"{j['trajectory_id']}/{j['probe_kind'] or 'report'}/pass-{j['pass_idx']}/{j['dimension']}/{criterion}"
            )
            rows.append(_row("evaluator", q, source, j["span"], reward, adv))
            if j["rationale_span"]:  # the reasoning written before the score: the same action, the same reward
                rows.append(_row("evaluator", q, f"{source}/rationale", j["rationale_span"], reward, adv))
    return rows


def _followup_rows(evidence: list[dict], cfg: TrainConfig, flat: float, counts: dict) -> list[dict]:
    """The follow-up search queries the evaluator wrote for re-checks, each rewarded by the change it made to its
    claim's separation from its anchor, advantaged within their query."""
    of_query: dict[str, list[tuple[tuple[dict, str], float]]] = defaultdict(list)
    for e in evidence:
        if e["followup_span"] is not None and e["followup_reward"] is not None:
            source = f"{e['trajectory_id']}/followup-{e['claim_idx']}"
            of_query[e["query_id"]].append(((e["followup_span"], source), e["followup_reward"]))
    return [
        _row("evaluator", q, source, span, reward, adv)
        for q, (span, source), reward, adv in _advantaged(of_query, cfg, flat, "evaluator", counts)
        if span["token_ids"]
    ]


def _verdict_rows(evidence: list[dict], cfg: TrainConfig, flat: float, counts: dict) -> list[dict]:
    """The verdicts written on claims with an anchor and on their anchors, each that earned a reward (an unparsable
    one earns the lowest even when its twin has nothing to be compared with), advantaged within their query."""
    of_query: dict[str, list[tuple[tuple[dict, str], float]]] = defaultdict(list)  # query -> ((span, source), reward)
    for e in evidence:
        if not e["anchor_span"]:
            continue
        check = "citation" if e.get("citation") else "deeper" if e["deeper"] else "claim"
        source = f"{e['trajectory_id']}/{e['probe_kind'] or 'report'}/{check}-{e['claim_idx']}"
        for span, reward, suffix in ((e["span"], e["reward"], ""), (e["anchor_span"], e["anchor_reward"], "/anchor")):
            if reward is not None:
                of_query[e["query_id"]].append(((span, source + suffix), reward))
    return [
        _row("evaluator", q, source, span, reward, adv)
        for q, (span, source), reward, adv in _advantaged(of_query, cfg, flat, "evaluator", counts)
        if span["token_ids"]
    ]


def _some_prefixes(rows: list[dict], per_query: int | None, seed: int) -> list[dict]:
    """The rows of at most `per_query` prefixes per query (all with None), drawn with `seed`; a prefix shared by
    two queries is drawn (or not) in each on its own.

    >>> rows = [{"query_id": q, "prefix": f"{q}{p}", "n": n} for q in "ab" for p in range(3) for n in range(2)]
    >>> [(r["prefix"], r["n"]) for r in _some_prefixes(rows, 1, seed=0)]
    [('a1', 0), ('a1', 1), ('b1', 0), ('b1', 1)]
    """
    if per_query is None:
        return rows
    prefixes: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r["prefix"] not in prefixes[r["query_id"]]:
            prefixes[r["query_id"]].append(r["prefix"])
    rng = random.Random(seed)
    chosen = {(q, p) for q, ps in prefixes.items() for p in rng.sample(ps, min(per_query, len(ps)))}
    return [r for r in rows if (r["query_id"], r["prefix"]) in chosen]


def _advantaged(groups: dict, cfg: TrainConfig, flat: float, role: str, counts: dict[str, int]):
    """(group key, member, reward, advantage) for every member of every group with spread; counts the groups
    of `role` and the flat ones. A role weighted 0 is counted but gives nothing."""
    from score.rl import group_advantages  # score.rl imports torch: only when samples are built

    for key, members in groups.items():
        g = group_advantages([reward for _, reward in members], cfg.normalize_std, flat)
        counts[f"{role}_groups"] += 1
        counts[f"{role}_flat_groups"] += g.flat
        if g.flat or getattr(cfg.role_weight, role) == 0:
            continue
        for (member, reward), adv in zip(members, g.advantages):
            yield key, member, reward, adv


def _row(role: str, query_id: str, source_id: str, span: dict, reward: float, advantage: float) -> dict:
    """A row of samples.parquet, but its round."""
    return {
        "role": role,
        "query_id": query_id,
        "source_id": source_id,
        "span": span["name"],
        "prefix": span["prefix"],
        "prompt": span["prompt"],
        "token_ids": span["token_ids"],
        "logprobs": span["logprobs"],
        "mask": span.get("mask"),
        "choices": span.get("choices"),
        "temperature": span["temperature"],
        "reward": reward,
        "advantage": advantage,
    }


def run(ctx: StageContext) -> TrainStats:
    from score.models import resolve_model_path
    from score.models.base import free_memory
    from score.trainer import Trainer, TrainSample

    cfg, tc = ctx.cfg, ctx.cfg.train
    rows, counts = build_samples(ctx.round, _read(ctx), tc, cfg.reward.flat_spread, ctx.seed)
    ctx.ws.release()  # the sampling model's memory goes to the trainer's copy
    t0 = time.perf_counter()
    trainer = Trainer(cfg.model, tc, resolve_model_path(cfg.model), ctx.policy.path, ctx.seed)
    ctx.write(TRAIN_SAMPLES, rows)
    tokenizer = trainer.tokenizer
    prefix_ids = functools.cache(lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    samples = [
        TrainSample(
            r["role"],
            tokenizer(r["prompt"], add_special_tokens=False)["input_ids"],
            r["token_ids"],
            r["logprobs"],
            r["advantage"],
            temperature=r["temperature"],
            prefix_ids=prefix_ids(r["prefix"]) if r["prefix"] else [],
            mask=r["mask"],
            choices=r["choices"],
        )
        for r in rows
    ]
    note = untrained_note(rows, counts, tc)
    if note:
        log.warning("round %d: %s", ctx.round, note)
    steps_per_round = math.ceil(len(samples) / tc.batch_size) * tc.epochs
    logs = trainer.train(
        samples,
        {"solver": tc.role_weight.solver, "evaluator": tc.role_weight.evaluator},
        total_steps=cfg.campaign.rounds * steps_per_round,
        desc=f"round {ctx.round} train",
    )
    train_seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="score-ckpt-") as tmp:
        trainer.save(Path(tmp))  # the main process writes the files; the others take part in gathering them
        ctx.write_checkpoint(Path(tmp))
    ctx.write(TRAIN_STEPS, [{"round": ctx.round, **vars(s)} for s in logs])
    stats = _stats(rows, counts, logs, trainer)
    del trainer  # its model, optimizer and gradients: the next round's sampler needs the memory
    free_memory()
    return replace(
        stats,
        method=tc.method,
        train_seconds=round(train_seconds, 1),
        resumed_from=ctx.policy.name,
        untrained_roles=untrained_roles(rows, tc),
        note=note,
    )


ROLES = ("solver", "evaluator")


def untrained_roles(rows: list[dict], tc: TrainConfig) -> list[str]:
    """The weighted roles with no sample in `rows`."""
    return [role for role in ROLES if getattr(tc.role_weight, role) > 0 and not any(r["role"] == role for r in rows)]


def untrained_note(rows: list[dict], counts: dict[str, int], tc: TrainConfig) -> str:
    """In words, each weighted role that trains on no sample this round and why ("" when both train).

    >>> untrained_note([], {"solver_groups": 2, "solver_flat_groups": 2, "evaluator_groups": 0,
    ...                     "evaluator_flat_groups": 0}, TrainConfig())  # doctest: +NORMALIZE_WHITESPACE
    'the solver trained on nothing (all 2 of its groups flat: no reward spread); the evaluator trained on nothing
    (no group); the checkpoint is the previous policy, unchanged'
    """
    parts = []
    for role in untrained_roles(rows, tc):
        groups, flat = counts[f"{role}_groups"], counts[f"{role}_flat_groups"]
        why = (
            "no group" if not groups
            else f"all {groups} of its groups flat: no reward spread" if flat == groups
            else f"{groups - flat} of {groups} groups with spread, none of their samples kept"
        )  # fmt: skip
        parts.append(f"the {role} trained on nothing ({why})")
    if parts and not rows:
        parts.append("the checkpoint is the previous policy, unchanged")
    return "; ".join(parts)


def _read(ctx: StageContext) -> TrainInputs:
    return TrainInputs(
        ctx.read(REPORTS, columns=["query_id", "sample_idx", "trajectory_id", "spans"]).to_pylist(),
        ctx.read(SOLVER_REWARDS).to_pylist(),
        ctx.read(RUBRICS, columns=["query_id", "rubric_idx", "span"]).to_pylist(),
        ctx.read(EVALUATOR_REWARDS).to_pylist(),
        ctx.read(JUDGEMENT_SPANS, columns=JUDGEMENT_COLUMNS).to_pylist(),
        ctx.read(EVIDENCE, columns=EVIDENCE_COLUMNS).to_pylist(),
        ctx.read(CITATIONS, columns=CITATION_COLUMNS).to_pylist(),
    )


def _stats(rows: list[dict], counts: dict[str, int], logs: list, trainer) -> TrainStats:
    """The statistics of what was trained (the method, timing and resumed checkpoint are the caller's)."""
    padded = sum(s.padded_tokens for s in logs)
    step_seconds = sum(s.seconds for s in logs)
    return TrainStats(
        samples=len(rows),
        solver_samples=sum(r["role"] == "solver" for r in rows),
        evaluator_samples=sum(r["role"] == "evaluator" for r in rows),
        judgement_samples=sum(r["span"] in ("judgement", "rationale") for r in rows),
        verdict_samples=sum(r["span"] == "verdict" for r in rows),
        followup_samples=sum(r["span"] == "followup" for r in rows),
        **counts,
        steps=len(logs),
        global_step=trainer.step,
        processes=trainer.accelerator.num_processes,
        trainable_parameters=trainer.trainable_parameters(),
        trainable_tokens=sum(s.tokens for s in logs),
        tokens_per_second=round(padded / step_seconds, 1) if step_seconds else 0.0,
        loss_first=round(logs[0].loss, 5) if logs else None,
        loss_last=round(logs[-1].loss, 5) if logs else None,
        kl_mean=round(sum(s.kl for s in logs) / len(logs), 6) if logs else None,
        clip_frac_mean=round(sum(s.clip_frac for s in logs) / len(logs), 4) if logs else None,
        evaluator_update_share=round(sum(s.evaluator_share for s in logs) / len(logs), 4) if logs else None,
        evaluator_token_share=round(sum(s.evaluator_token_share for s in logs) / len(logs), 4) if logs else None,
        trained_nothing=not logs,
        old_logprobs="trainer" if trainer.recompute else "sampler",
        **_sampler_gap(logs),
    )


def _sampler_gap(logs: list) -> dict:
    """The round's |trainer - sampler| log-prob gap at its start weights: mean over the tokens where it is known
    (token-weighted across steps) and the maximum; None when no step knew it."""
    known = [s for s in logs if s.sampler_gap_tokens]
    if not known:
        return dict(sampler_gap_mean=None, sampler_gap_max=None)
    tokens = sum(s.sampler_gap_tokens for s in known)
    mean = sum(s.sampler_gap_mean * s.sampler_gap_tokens for s in known) / tokens
    return dict(sampler_gap_mean=round(mean, 6), sampler_gap_max=round(max(s.sampler_gap_max for s in known), 6))
