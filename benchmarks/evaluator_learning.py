"""Evaluator learning, against ground truth: does training the evaluator role on SCORE's own verdict reward (no
gold label in it) make the 135M model a better judge of claims, compared with a shuffled-reward control at equal
compute, a gold-label upper bound and the base model, on the same held-out items?

Items (`benchmarks/evaluator_items.py`, built once from the shipped corpus, split by title before anything here
was tuned): per passage a supported claim (one of its sentences), its anchor (a number or name swapped: not
supported), a neighbour (the claim against another title's passage: not found) and the mirrored passage (the swap
made in the passage, so there the anchor is the supported sentence: spotting the edited-looking sentence cannot
pass). Report-level pairs are left out: no corruption kind was measured visible to this judge yet.

Arms, each `--rounds` rounds of `--items` train items (the same items per round and seed in every arm), a claim and
its anchor each judged once per item (a verdict drawn from the three answers, as self-evaluate draws them), groups
of `--group` items (as a query's checked claims), the library's Trainer (LoRA, warm-up, KL, clip):
- score: SCORE's reward, `score.rewards.pair_credit` of each verdict against its partner's distribution (what
  self-evaluate rewards verdicts with; the anchor is self-made, no label read);
- control: the same reward, permuted within each group (same samples, same compute, no information);
- gold: 1 for the right verdict (claim supported; anchor not supported), else 0: is the task learnable here?
- base: no training.

Metrics, exact from the restricted answer distributions (temperature `evaluate.judge_temperature`), on every held-out
item for every checkpoint: detection P(claim gets more support than anchor) + half the ties; mirrored detection
(anchor above claim against the mirrored passage); AUC of P(Yes) for the claim against its passage vs against the
neighbour. Per round: the round's train-item detection before the update, reward, answer entropy, KL, clip
fraction, effective (non-flat) samples, the evaluator's share of the update by weight.

Statistics: per seed a paired bootstrap 95% interval over items of (arm - base); over seeds a 95% t interval of the
per-seed means; power printed before training from the base's per-item spread.

Success criteria, written before the first run (each marked met or not at the end):
1. score - control held-out detection: mean over seeds > 0 and its 95% t interval above 0;
2. score above base on held-out detection in every seed;
3. no loss on mirrored pairs: mean over seeds of score's mirrored detection minus base's >= -0.02.

Run: `python benchmarks/evaluator_learning.py [--seeds 0,1,2] [--rounds 6] [--items 24] [--heldout 120]`; writes
a record (`benchmarks/records/`) and the curves' plot beside it.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass

import numpy as np
from common import bench_args, write_record
from evaluator_items import load_or_build

from score.config import load_config
from score.evaluator.claims import answer_tokens, parse_verdict, support_distribution
from score.intervals import mean_interval, t_quantile
from score.models import SamplingParams, resolve_model_path
from score.models.transformers_backend import TransformersBackend
from score.pipeline import derive_seed
from score.prompts import verdict_parts
from score.rewards import SUPPORT, pair_credit
from score.rl import group_advantages
from score.trainer import Trainer, TrainSample
from score.workspace import Workspace

ARMS = ("score", "control", "gold")
DEFAULTS = ["train.lr=5.0e-4", "train.warmup_steps=4", "train.batch_size=32"]  # the learning check's lr, a priori


@dataclass
class Judge:
    """The policy being trained, read through the library's backend (answers drawn from their set, passages
    encoded once per item): the backend's model is the trainer's, so what is sampled is what is trained."""

    trainer: Trainer
    backend: TransformersBackend
    temperature: float

    def dists(self, passage: tuple[str, str], claims: list[str]) -> list[list[float]]:
        """Support-level distributions (contradicted, not found, supported) of each claim against one passage."""
        prefix, suffixes = verdict_parts(self.backend.render, [passage], claims)
        answers = answer_tokens(self.backend.tokenize)
        rows = self.backend.next_token_logprobs(prefix, suffixes, list(answers.candidates))
        return [support_distribution(row, self.temperature) for row in rows]


def above(a: list[float], b: list[float]) -> float:
    """P(A > B) + half P(A = B) for independent draws from two support-level distributions.

    >>> above([0.0, 0.0, 1.0], [1.0, 0.0, 0.0]), above([0.5, 0.0, 0.5], [0.5, 0.0, 0.5])
    (1.0, 0.5)
    """
    return sum(pa * pb * (1.0 if i > j else 0.5 if i == j else 0.0) for i, pa in enumerate(a) for j, pb in enumerate(b))


def auc(pos: list[float], neg: list[float]) -> float:
    """Mann-Whitney AUC, ties half: P(a positive's score > a negative's).

    >>> auc([0.9, 0.5], [0.5, 0.1])
    0.875
    """
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))


def measure(judge: Judge, items: list[dict]) -> dict:
    """Held-out figures of one checkpoint: per-item detection and mirrored detection, and the AUC."""
    det, mirrored, pos, neg = [], [], [], []
    for it in items:
        label = f"[1] ({it['title']})"
        claim, anchor = judge.dists((label, it["passage"]), [it["claim"], it["anchor"]])
        m_claim, m_anchor = judge.dists((label, it["mirrored_passage"]), [it["claim"], it["anchor"]])
        (neighbour,) = judge.dists(("[1] (another source)", it["neighbour_passage"]), [it["claim"]])
        det.append(above(claim, anchor))
        mirrored.append(above(m_anchor, m_claim))
        pos.append(claim[SUPPORT["supported"]])
        neg.append(neighbour[SUPPORT["supported"]])
    return {"detection": det, "mirrored": mirrored, "auc": auc(pos, neg), "p_yes_claim": float(np.mean(pos))}


def rewards(arm: str, verdicts: list[str], dists: list[list[float]], rng: random.Random, group: int) -> list[float]:
    """One round's rewards, verdicts in (claim, anchor) pairs: SCORE's pair credit, permuted within each group of
    `group` pairs (control), or gold correctness."""
    if arm == "gold":
        return [float((v == "supported") == (k % 2 == 0)) for k, v in enumerate(verdicts)]
    out = []
    for k in range(0, len(verdicts), 2):
        c, a = SUPPORT[verdicts[k]], SUPPORT[verdicts[k + 1]]
        out += [pair_credit(c, dists[k + 1], above=True), pair_credit(a, dists[k], above=False)]
    if arm == "control":
        for g in range(0, len(out), 2 * group):
            chunk = out[g : g + 2 * group]
            rng.shuffle(chunk)
            out[g : g + 2 * group] = chunk
    return out


def train_round(judge: Judge, arm: str, items: list[dict], seed: int, r: int, args, total_steps: int) -> dict:
    """One round of one arm: a verdict on each item's claim and anchor, rewards, advantages, one update."""
    be, answers = judge.backend, answer_tokens(judge.backend.tokenize)
    samples, verdicts, dists, groups = [], [], [], []
    for it in items:
        prefix, suffixes = verdict_parts(
            be.render, [(f"[1] ({it['title']})", it["passage"])], [it["claim"], it["anchor"]]
        )
        params = SamplingParams(temperature=judge.temperature, seed=derive_seed(seed, r, it["item_id"]))
        for suffix, w in zip(suffixes, be.write_scores(prefix, suffixes, answers, params)):
            verdicts.append(parse_verdict(be.decode(w.token_ids)))
            dists.append(support_distribution(w.first, judge.temperature))
            samples.append(
                TrainSample("evaluator", be.tokenize(suffix), w.token_ids, w.logprobs, 0.0, judge.temperature,
                            prefix_ids=be.tokenize(prefix), choices=w.choices)
            )  # fmt: skip
    reward = rewards(arm, verdicts, dists, random.Random(derive_seed(seed, r, "shuffle")), args.group)
    trained = []
    for g in range(0, len(samples), 2 * args.group):  # the campaign's flat bar and normalisation (score.stages.train)
        adv = group_advantages(reward[g : g + 2 * args.group], args.normalize_std, args.flat_spread)
        groups.append(adv.flat)
        for s, a in zip(samples[g : g + 2 * args.group], adv.advantages):
            if not adv.flat:
                s.advantage = a
                trained.append(s)
    logs = judge.trainer.train(trained, {"evaluator": 1.0}, total_steps) if trained else []
    entropy = [-sum(p * math.log(p) for p in d if p > 0) for d in dists]
    return {
        "round": r,
        "train_detection": float(np.mean([above(dists[k], dists[k + 1]) for k in range(0, len(dists), 2)])),
        "reward": float(np.mean(reward)),
        "entropy": float(np.mean(entropy)),
        "kl": float(np.mean([s.kl for s in logs])) if logs else 0.0,
        "clip_frac": float(np.mean([s.clip_frac for s in logs])) if logs else 0.0,
        "effective_samples": len(trained),
        "flat_groups": sum(groups),
        "evaluator_share": float(np.mean([s.evaluator_share for s in logs])) if logs else 0.0,
        "supported_share": sum(v == "supported" for v in verdicts) / len(verdicts),
    }


def make_judge(cfg, seed: int) -> Judge:
    path = resolve_model_path(cfg.model)
    trainer = Trainer(cfg.model, cfg.train, path, None, seed)
    backend = TransformersBackend(path, batch_size=cfg.model.batch_size, threads=cfg.model.threads)
    backend.model = trainer.unwrapped  # one model: sampled from and trained (LoRA dropout 0: eval = train mode)
    return Judge(trainer, backend, cfg.evaluate.judge_temperature)


def run_arm(cfg, arm: str, seed: int, train: list[dict], heldout: list[dict], args) -> dict:
    judge = make_judge(cfg, seed)
    rounds = []
    for r in range(args.rounds):
        items = random.Random(derive_seed(seed, r, "items")).sample(train, args.items)  # equal across arms
        t0 = time.perf_counter()
        rounds.append(
            train_round(
                judge, arm, items, seed, r, args, args.rounds * math.ceil(2 * args.items / cfg.train.batch_size)
            )
        )
        rounds[-1]["seconds"] = round(time.perf_counter() - t0, 1)
        shown = " ".join(f"{k} {v:.3g}" for k, v in rounds[-1].items())
        print(f"  {arm} seed {seed} round {r}: {shown}", flush=True)
    return {"arm": arm, "seed": seed, "rounds": rounds, "heldout": measure(judge, heldout)}


def bootstrap(diff: list[float], seed: int, n: int = 2000) -> tuple[float, float]:
    """95% percentile interval of the mean of `diff` over items, resampled `n` times.

    >>> bootstrap([1.0] * 5, 0)
    (1.0, 1.0)
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(diff)
    means = x[rng.integers(0, len(x), size=(n, len(x)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def power(n: int, seeds: int) -> str:
    """What effect the design can see, before the run: per seed, the paired difference over n items is seen with
    80% power at 5% (two-sided) when it exceeds 2.8 x sd / sqrt(n), sd the per-item sd of (arm - base), unknown
    before training (the base's own per-item spread says little: it answers claim and anchor alike), so a range;
    over seeds, the t interval's half-width is t(seeds - 1) x the between-seed sd / sqrt(seeds).

    >>> power(100, 3).split(";")[0]
    'power: per seed over 100 items, detectable paired effect 0.014 / 0.028 / 0.056 at per-item sd 0.05 / 0.1 / 0.2'
    """
    mde = " / ".join(f"{2.8 * sd / math.sqrt(n):.3f}" for sd in (0.05, 0.1, 0.2))
    return (
        f"power: per seed over {n} items, detectable paired effect {mde} at per-item sd 0.05 / 0.1 / 0.2; over "
        f"{seeds} seeds the 95% t interval is +- {t_quantile(seeds - 1) / math.sqrt(seeds):.2f} x between-seed sd"
    )


def summarise(base: dict, runs: list[dict], seeds: list[int]) -> tuple[list[dict], dict]:
    """Table rows (arm x seed: held-out figures, paired difference with bootstrap interval) and the criteria."""
    rows, by = [], {}
    for run in runs:
        h = run["heldout"]
        diff = [a - b for a, b in zip(h["detection"], base["detection"])]
        mdiff = [a - b for a, b in zip(h["mirrored"], base["mirrored"])]
        by[(run["arm"], run["seed"])] = (float(np.mean(diff)), float(np.mean(mdiff)), h)
        rows.append(
            {"arm": run["arm"], "seed": run["seed"], "detection": float(np.mean(h["detection"])),
             "mirrored": float(np.mean(h["mirrored"])), "auc": h["auc"], "vs_base": float(np.mean(diff)),
             "vs_base_ci": bootstrap(diff, run["seed"]), "mirrored_vs_base": float(np.mean(mdiff)),
             "item_sd": float(np.std(diff))}
        )  # fmt: skip
    score_minus_control = [
        float(np.mean([a - b for a, b in zip(by[("score", s)][2]["detection"], by[("control", s)][2]["detection"])]))
        for s in seeds
    ]
    m, lo, hi = mean_interval(score_minus_control)
    criteria = {
        "1 score - control > 0, interval above 0": {"value": [m, lo, hi], "met": lo > 0},
        "2 score above base in every seed": {"value": [by[("score", s)][0] for s in seeds],
                                             "met": all(by[("score", s)][0] > 0 for s in seeds)},
        "3 mirrored: score - base >= -0.02": {"value": float(np.mean([by[("score", s)][1] for s in seeds])),
                                              "met": float(np.mean([by[("score", s)][1] for s in seeds])) >= -0.02},
    }  # fmt: skip
    return rows, criteria


def plot(runs: list[dict], path) -> None:
    """Per arm, the mean over seeds of each curve per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["train_detection", "reward", "entropy", "kl", "effective_samples", "supported_share"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, key in zip(axes.flat, keys):
        for arm in ARMS:
            curves = np.array([[r[key] for r in run["rounds"]] for run in runs if run["arm"] == arm])
            ax.plot(curves.mean(axis=0), label=arm, marker="o")
        ax.set_title(key)
        ax.set_xlabel("round")
    axes.flat[0].legend()
    fig.suptitle("evaluator learning: mean over seeds per round (train items, before each update)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--items", type=int, default=24, help="train items per round (2 verdicts each)")
    parser.add_argument("--group", type=int, default=4, help="items per reward group (as a query's claims)")
    parser.add_argument("--heldout", type=int, default=120, help="held-out items measured (the first of the 200)")
    args = bench_args(__doc__, parser=parser)
    cfg = load_config(args.config, [*DEFAULTS, *args.overrides])
    args.flat_spread, args.normalize_std = cfg.reward.flat_spread, cfg.train.normalize_std
    seeds = [int(s) for s in args.seeds.split(",")]
    items = load_or_build(Workspace(cfg))
    train = [it for it in items if it["split"] == "train"]
    heldout = [it for it in items if it["split"] == "heldout"][: args.heldout]
    t0 = time.perf_counter()
    base = measure(make_judge(cfg, 0), heldout)
    print(f"base: detection {np.mean(base['detection']):.3f} mirrored {np.mean(base['mirrored']):.3f} "
          f"auc {base['auc']:.3f} ({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    print(power(len(heldout), len(seeds)), flush=True)
    runs = [run_arm(cfg, arm, seed, train, heldout, args) for seed in seeds for arm in ARMS]
    rows, criteria = summarise(base, runs, seeds)
    print(f"\n{'arm':8} {'seed':>4} {'detect':>7} {'mirror':>7} {'auc':>6} {'vs base [95% bootstrap]':>28}")
    print(f"{'base':8} {'':>4} {np.mean(base['detection']):7.3f} {np.mean(base['mirrored']):7.3f} {base['auc']:6.3f}")
    for r in rows:
        lo, hi = r["vs_base_ci"]
        print(f"{r['arm']:8} {r['seed']:>4} {r['detection']:7.3f} {r['mirrored']:7.3f} {r['auc']:6.3f} "
              f"{r['vs_base']:+8.3f} [{lo:+.3f}, {hi:+.3f}]")  # fmt: skip
    for arm in ARMS:
        m, lo, hi = mean_interval([r["vs_base"] for r in rows if r["arm"] == arm])
        sd = np.mean([r["item_sd"] for r in rows if r["arm"] == arm])
        print(f"{arm:8} over seeds: detection vs base {m:+.3f} [{lo:+.3f}, {hi:+.3f}] (95% t); per-item sd {sd:.3f}")
    for name, c in criteria.items():
        print(f"criterion {name}: {'MET' if c['met'] else 'NOT MET'} ({c['value']})")
    figures = {
        "base": {k: (float(np.mean(v)) if isinstance(v, list) else v) for k, v in base.items()},
        "rows": rows,
        "criteria": criteria,
        "curves": [{k: r[k] for k in ("arm", "seed", "rounds")} for r in runs],
        "seconds": round(time.perf_counter() - t0),
    }
    record = write_record("evaluator_learning", args, cfg, figures)
    plot(runs, record.with_suffix(".png"))
    print(f"record: {record} (plot beside it)")


if __name__ == "__main__":
    main()
