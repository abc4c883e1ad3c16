"""The co-evolution table against ground truth: SCORE against the static baseline, scored by gold, never by a judge.

    python benchmarks/coevolution.py [--seeds 0,1,2] [--rounds 5] [--store runs-coevolution] [--items 40]

Runs `score ablate` on the default config (questions the corpus answers, with gold; score/datasets/wiki_queries.py):
per seed, the SCORE arm (evaluator trained alongside the solver, meta-harness on) and the static arm (the base model
judging, the seed harness frozen, trained alike: equal compute), on the same queries, seeds and trajectory ids,
round 0 shared. Resumable: run it again and finished stages and measurements are skipped (the store is kept).

Then, per arm, seed and round: each checkpoint's held-out gold (score.gold: the same 8 held-out queries x 2
trajectories at every checkpoint, same sampling seeds), the hacking gap of the round's training reports, flat groups
at the top and at zero, solver samples trained, what the harness changed, and the evaluator's held-out
discrimination on the claim-verification items (benchmarks/evaluator_items.py, read off the support
probabilities: exact, no sampling) of the weights that judged the round. The record holds per round and arm the mean
over seeds with its 95% t interval, the paired difference SCORE - static per round (pairs share a seed), and the
smallest difference this design could see (`power`). Plots (one per outcome, both arms) are written beside it.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import RECORDS, bench_args, write_record

from score.config import load_config
from score.intervals import mean_interval, t_quantile
from score.report import load_series
from score.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = {  # name -> what it reads from one arm's series at round r (None: not measured)
    "held-out gold recall": lambda s, r: s.heldout.get(r, {}).get("gold_recall"),
    "held-out answer accuracy": lambda s, r: s.heldout.get(r, {}).get("answer_correct"),
    "held-out gold met": lambda s, r: s.heldout.get(r, {}).get("found_recall"),
    "held-out 2+ calls": lambda s, r: s.heldout.get(r, {}).get("multi_call_share"),
    "hacking gap": lambda s, r: s.gold.get(r, {}).get("gap"),
    "in-loop reward": lambda s, r: s.gold.get(r, {}).get("reward_mean"),
    "gold score (training reports)": lambda s, r: s.gold.get(r, {}).get("gold_score"),
    "flat at top": lambda s, r: s.summary[s.rounds.index(r)].get("flat_at_top") if r in s.rounds else None,
    "flat at zero": lambda s, r: s.summary[s.rounds.index(r)].get("flat_at_zero") if r in s.rounds else None,
    "solver samples": lambda s, r: s.train[r].solver_samples if r in s.train else None,
    "active dimensions": lambda s, r: len(s.evolve[r].active) if r in s.evolve else None,
    "harness decisions": lambda s, r: s.evolve[r].decisions if r in s.evolve else None,
}


def power(seeds: int, sd_diff: float) -> float:
    """The paired difference (SCORE - static, one per seed) this design detects with 80% power at 5% two-sided:
    (t_{0.975, n-1} + t_{0.8, n-1}) x sd / sqrt(n), t_{0.8} taken as 0.84 x t_{0.975} / 1.96 (a close enough
    approximation at these degrees of freedom).

    >>> round(power(3, 0.1), 3), round(power(5, 0.1), 3)
    (0.355, 0.177)
    """
    t = t_quantile(seeds - 1)
    return (t + 0.84 * t / 1.96) * sd_diff / math.sqrt(seeds)


def ablate(args, seeds: list[int]) -> float:
    """`score ablate` (resumes: finished work skips); returns its wall seconds."""
    cmd = [str(Path(sys.executable).parent / "score"), "ablate", "--rounds", str(args.rounds), "--seeds",
           ",".join(map(str, seeds)), "-c", args.config, "--set", f"store.root={args.store}",
           *(x for o in args.overrides for x in ("--set", o))]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.perf_counter() - t0


def discrimination(cfg, store_root: str, runs: list[str], rounds: int, n_items: int) -> dict:
    """Held-out claim-verification detection (evaluator_items, exact from the support probabilities) of the
    weights that judged each round: for SCORE's round r the checkpoint of round r-1 (base at round 0), for the
    static arm always the base. Returns run -> round -> mean detection (base: key -1)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from evaluator_items import load_or_build
    from evaluator_learning import Judge, measure

    from score.history import resolve

    out: dict[str, dict[int, float]] = {}
    for run in runs:
        ws = Workspace(cfg.model_copy(update={"run": run, "store": cfg.store.model_copy(update={"root": store_root})}))
        items = [it for it in load_or_build(ws) if it["split"] == "heldout"][:n_items]
        labels = {-1: "base"} | ({r: f"round-{r}" for r in range(rounds - 1)} if "-static" not in run else {})
        out[run] = {}
        for r, label in labels.items():
            _, policy = resolve(ws, label)
            judge = Judge(None, ws.backend(policy), cfg.evaluate.judge_temperature)  # type: ignore[arg-type]
            out[run][r] = float(np.mean(measure(judge, items)["detection"]))
            print(f"  {run} judge of round {r + 1}: held-out detection {out[run][r]:.3f}", flush=True)
        ws.release()
    return out


def table(arms: dict[str, list], rounds: list[int], judged: dict) -> tuple[list[dict], list[dict]]:
    """Per round and arm, each outcome's mean over seeds with its interval; per round, the paired differences."""
    rows, diffs = [], []
    for r in rounds:
        for arm, group in arms.items():
            row = {"round": r, "arm": arm, "seeds": len(group)}
            for name, read in {**OUTCOMES, "evaluator detection": _judged(judged)}.items():
                values = [v for s in group if (v := read(s, r)) is not None]
                row[name] = list(mean_interval(values)) if values else None
            rows.append(row)
        score, static = arms["score"], arms["static"]
        for name, read in {**OUTCOMES, "evaluator detection": _judged(judged)}.items():
            pairs = [(read(a, r), read(b, r)) for a, b in zip(score, static)]
            d = [a - b for a, b in pairs if a is not None and b is not None]
            if len(d) >= 2:
                sd = float(np.std(d, ddof=1))
                diffs.append({"round": r, "outcome": name, "diff": list(mean_interval(d)), "sd": sd,
                              "detectable": power(len(d), sd)})  # fmt: skip
    return rows, diffs


def pooled(arms: dict[str, list], rounds: list[int], judged: dict) -> list[dict]:
    """Per outcome, the paired difference SCORE - static averaged over the rounds where the arms differ (1 on), one
    value per seed: more trajectories behind each value than a single round's, the same 3 degrees of freedom."""
    out = []
    for name, read in {**OUTCOMES, "evaluator detection": _judged(judged)}.items():
        per_seed = []
        for a, b in zip(arms["score"], arms["static"]):
            d = [x - y for r in rounds if r >= 1 and (x := read(a, r)) is not None and (y := read(b, r)) is not None]
            if d:
                per_seed.append(sum(d) / len(d))
        if len(per_seed) >= 2:
            sd = float(np.std(per_seed, ddof=1))
            out.append({"outcome": name, "per_seed": per_seed, "diff": list(mean_interval(per_seed)), "sd": sd,
                        "detectable": power(len(per_seed), sd)})  # fmt: skip
    return out


def _judged(judged: dict):
    def read(s, r):
        by = judged.get(s.run, {})
        return by.get(r - 1, by.get(-1)) if "-static" not in s.run else by.get(-1)

    return read


def plot(rows: list[dict], path: Path) -> list[str]:
    """One figure, a panel per outcome, both arms' means over seeds with their 95% t intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in rows[0] if k not in ("round", "arm", "seeds")]
    cols = 4
    fig, axes = plt.subplots(math.ceil(len(names) / cols), cols, figsize=(16, 3.2 * math.ceil(len(names) / cols)))
    for ax, name in zip(axes.flat, names):
        for i, arm in enumerate(("score", "static")):
            pts = [(r["round"], *r[name]) for r in rows if r["arm"] == arm and r[name] is not None]
            if pts:
                x, m, lo, hi = zip(*pts)
                err = [[a - b if math.isfinite(b) else 0 for a, b in zip(m, lo)],
                       [b - a if math.isfinite(b) else 0 for a, b in zip(m, hi)]]  # fmt: skip
                ax.errorbar(x, m, yerr=err, capsize=3, linestyle="-" if i == 0 else "--", marker="os"[i], label=arm)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("round (-1: base weights)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    return names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--store", default=str(ROOT / "runs-coevolution"))
    p.add_argument("--items", type=int, default=40, help="held-out claim-verification items per judge measured")
    p.add_argument("--no-run", action="store_true", help="only read what the store holds (no ablation run)")
    args = bench_args(__doc__, parser=p)
    seeds = [int(s) for s in args.seeds.split(",")]
    cfg = load_config(ROOT / args.config, args.overrides)
    seconds = None if args.no_run else ablate(args, seeds)
    t0 = time.perf_counter()
    name = lambda arm, s: cfg.run + ("-static" if arm == "static" else "") + ("" if s == cfg.seed else f"-seed{s}")  # noqa: E731
    from score.store.store import Store

    store = Store(cfg.store.model_copy(update={"root": args.store}))
    arms = {arm: [load_series(store, name(arm, s)) for s in seeds] for arm in ("score", "static")}
    judged = discrimination(cfg, args.store, [name(a, s) for a in arms for s in seeds], args.rounds, args.items)
    rounds = [-1, *range(args.rounds)]
    rows, diffs = table(arms, rounds, judged)
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    png = RECORDS / f"coevolution-{stamp}.png"
    plot(rows, png)
    over_rounds = pooled(arms, rounds, judged)
    for d in over_rounds:
        m, lo, hi = d["diff"]
        print(f"rounds 1-{args.rounds - 1} {d['outcome']}: SCORE - static {m:+.3f} [{lo:+.3f}, {hi:+.3f}] over "
              f"{len(d['per_seed'])} seeds, detectable (80% power) {d['detectable']:.3f}")  # fmt: skip
    figures = {"seeds": seeds, "rounds": args.rounds, "ablate_seconds": seconds,
               "measure_seconds": round(time.perf_counter() - t0, 1), "evaluator_items": args.items,
               "rows": rows, "paired_differences": diffs, "pooled_differences": over_rounds, "plot": png.name,
               "load_at_start": os.getloadavg()}  # fmt: skip
    print("record:", write_record("coevolution", args, cfg, figures))


if __name__ == "__main__":
    main()
