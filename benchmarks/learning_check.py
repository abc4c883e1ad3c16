"""Learning check: with a simple, known reward, a few rounds of the real train stage raise the mean reward
on held-out queries. Prints the numbers before and after.

The reward is computed in Python with no judge, so what moves is the trainer's doing alone: for the react agent
(`generate.agent: react`, the default) `score.rewards.research_reward`: 0 when cut before an answer, else a
quarter for answering within the turn's budget (half that when the budget truncated the answer) and three
quarters for citation precision judged lexically with partial credit (a cited sentence is supported when half its
content words are in a passage it cites; one below that bar earns its share of it); for the plan template
`score.rewards.structure_reward` (half for citing distinct sources, half for section headings). Each round: the
real generate-reports stage (sampling with the previous round's checkpoint), then a `known-reward` stage
(declared below, run by the same runner behind its own manifest) that writes the known reward as the round's
solver rewards, then the real train stage reading its rewards from that stage through the rewards seam
(`run_stage(..., sources={REWARDS_SEAM: KNOWN_REWARD})`; evaluator samples off). Held-out: queries no round
trained on, `generate.samples_per_query` reports each, with the base model and with the last checkpoint, on the
same seeds.
Run: `python benchmarks/learning_check.py [--seeds 0,1] [--rounds 3] [--heldout 6] [--queries corpus|config]
[--reports DIR] [--set key=value ...]`; with several seeds it prints each seed's figures and the mean change with
a 95% t interval over the seeds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from score import solver
from score.checkpoints import Policy, base_policy
from score.config import load_config
from score.history import policy_for_round
from score.intervals import mean_interval
from score.pipeline import GENERATE, REWARDS_ARTIFACTS, REWARDS_SEAM, TRAIN, Read, StageSpec, TrainStats
from score.queries import round_queries
from score.rewards import cited_overlaps, graded_precision, lexical_precision, research_reward, structure_reward
from score.runner import StageContext, run_stage
from score.store.schemas import REPORTS, SOLVER_REWARDS
from score.workspace import Workspace

CORPUS_QUERIES = 60  # with --queries corpus: 4 a round x 3 rounds trained, the held-out ones from the rest
DEFAULTS = [  # 16-21 minutes a seed on 2 CPU cores here; every one can be overridden with --set
    "data.queries_per_round=4",  # 32 trajectories a round: with 2 x 8, one seed's rounds held none that cited
    "generate.samples_per_query=8",  # K=8: more groups holding a trajectory that cites
    "generate.report_tokens=160",
    "train.role_weight.evaluator=0",
    "train.train_plan=false",  # the reward reads the report only
    "train.epochs=2",
    "train.batch_size=8",
    "train.lr=5e-4",
    "train.warmup_steps=4",  # without it AdamW's first step at 5e-4 sent a token from -2.9 to -16 nats (KL 470)
]


def reward_of(row: dict) -> float:
    if row["agent"] == "react":
        return research_reward(row["report"], row["finish_reason"], row["sources"])
    return structure_reward(row["report"], len(row["cited"]), len(row["sources"]))


@dataclass
class KnownRewardStats:
    reports: int = 0
    reward_mean: float = 0.0


def known_rewards(ctx: StageContext) -> KnownRewardStats:
    """The round's solver rewards from the known reward; no rubric, so no evaluator sample."""
    reports = ctx.read(REPORTS).to_pylist()
    rows = [
        {
            "round": ctx.round,
            "query_id": r["query_id"],
            "trajectory_id": r["trajectory_id"],
            "validity": 1.0,
            "score": reward_of(r),
            "reward": reward_of(r),
            "group_mean": None,
            "group_std": None,
        }
        for r in reports
    ]
    ctx.write(SOLVER_REWARDS, rows)
    for artifact in REWARDS_ARTIFACTS:  # the rest of what train reads through the seam: nothing
        if artifact is not SOLVER_REWARDS:
            ctx.write(artifact, [])
    return KnownRewardStats(len(rows), statistics.mean(r["reward"] for r in rows))


KNOWN_REWARD = StageSpec(  # a reward source: writes what train's rewards seam reads, in place of self-evaluate
    name="known-reward",
    folder="known-reward",
    impl="__main__:known_rewards",
    stats=KnownRewardStats,
    reads=(Read(GENERATE.name, REPORTS),),
    writes=REWARDS_ARTIFACTS,
)


@dataclass
class Heldout:
    reward: float
    cites: float  # share of reports citing a source
    headed: float  # share with a markdown heading
    precision: float  # lexical citation precision, mean over reports that cite
    graded: float  # the reward's graded precision, mean over all reports (0 for those citing nothing)
    copied: float  # share of cited sentences with 90%+ of their content words in what they cite (copied, or near)
    answered: float  # share of trajectories that answered
    tool_calls: float  # mean tool calls (plan: searches)
    multi: float  # share with at least 2 tool calls

    def line(self) -> str:
        return (
            f"reward {self.reward:.3f}  (citation precision {self.precision:.0%}, graded {self.graded:.3f}, "
            f"cited sentences near-copied {self.copied:.0%}, "
            f"answered {self.answered:.0%}, tool calls {self.tool_calls:.2f} mean, {self.multi:.0%} with 2+; "
            f"citing {self.cites:.0%}, with headings {self.headed:.0%})"
        )


def heldout(ws: Workspace, policy: Policy, queries, seed: int, keep: Path | None = None) -> Heldout:
    rows, _ = solver.research(ws, queries, policy, seed)
    if keep:  # the held-out reports, to read what the numbers count
        keep.parent.mkdir(parents=True, exist_ok=True)
        columns = ("query_id", "query", "sample_idx", "report", "finish_reason", "tool_calls", "sources")
        pd.DataFrame([{c: r[c] for c in columns} for r in rows]).to_parquet(keep)
    n = len(rows)
    overlaps = [o for r in rows for o in cited_overlaps(r["report"], r["sources"])]
    precisions = [p for r in rows if (p := lexical_precision(r["report"], r["sources"])) is not None]
    return Heldout(
        reward=statistics.mean(reward_of(r) for r in rows),
        cites=sum(bool(r["cited"]) for r in rows) / n,
        headed=sum(any(line.lstrip().startswith("#") for line in r["report"].splitlines()) for r in rows) / n,
        precision=statistics.mean(precisions) if precisions else 0.0,
        graded=statistics.mean(graded_precision(r["report"], r["sources"]) for r in rows),
        copied=sum(o >= 0.9 for o in overlaps) / len(overlaps) if overlaps else 0.0,
        answered=sum(r["answered"] for r in rows) / n,
        tool_calls=sum(r["tool_calls"] for r in rows) / n,
        multi=sum(r["tool_calls"] >= 2 for r in rows) / n,
    )


CORPUS_QUERY = "What is {title}, and what is it known for? Write a short report that cites its sources."


def write_corpus_queries(ws: Workspace, path: Path, n: int) -> None:
    """`n` queries the search corpus can answer, one per title of a fixed sample of its passages (the same sample
    for every seed): the base model then finds passages that can support what it writes, so citation precision is
    a reward it can reach. On the shipped DeepConsult queries the wiki corpus mostly returns unrelated passages."""
    titles = pd.read_parquet(ws.corpus_path, columns=["title"])["title"].drop_duplicates()
    queries = [CORPUS_QUERY.format(title=t) for t in titles.sample(min(n, len(titles)), random_state=0)]
    pd.DataFrame({"id": [f"c{i:03d}" for i in range(len(queries))], "query": queries}).to_csv(path, index=False)


def one_seed(args, seed: int) -> tuple[Heldout, Heldout, float, str]:
    """Base and trained held-out figures for one seed (its own round queries and held-out set), minutes, agent."""
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            *DEFAULTS,
            *args.overrides,
            f"store.root={tmp}",
            f"run=learning-check-seed{seed}",
            f"seed={seed}",
            f"campaign.rounds={args.rounds}",
        ]
        if args.queries == "corpus":
            queries = Path(tmp) / "corpus_queries.csv"
            write_corpus_queries(Workspace(load_config(args.config, overrides)), queries, CORPUS_QUERIES)
            overrides += [f"data.queries={queries}", "data.id_column=id"]
        cfg = load_config(args.config, overrides)
        ws = Workspace(cfg)
        trained = {
            q.id for r in range(args.rounds) for q in round_queries(ws.queries, cfg.data.queries_per_round, r, seed)
        }
        held = [q for q in ws.queries if q.id not in trained][: args.heldout]
        t0 = time.perf_counter()
        keep = {
            k: Path(args.reports) / f"seed{seed}-{k}.parquet" if args.reports else None for k in ("base", "trained")
        }
        before = heldout(ws, base_policy(cfg.model), held, seed=12345, keep=keep["base"])
        for r in range(args.rounds):
            run_stage(ws, GENERATE, r)
            known = run_stage(ws, KNOWN_REWARD, r).manifest.stats_as(KnownRewardStats)
            s = run_stage(ws, TRAIN, r, sources={REWARDS_SEAM: KNOWN_REWARD}).manifest.stats_as(TrainStats)
            print(
                f"seed {seed} round {r}: train-query reward {known.reward_mean:.3f}; {s.samples} samples, "
                f"{s.solver_flat_groups}/{s.solver_groups} flat groups, {s.steps} steps, "
                f"loss {s.loss_first} -> {s.loss_last}, kl {s.kl_mean}, {s.train_seconds} s",
                flush=True,
            )
        after = heldout(ws, policy_for_round(ws, args.rounds), held, seed=12345, keep=keep["trained"])
        minutes = (time.perf_counter() - t0) / 60
    print(
        f"seed {seed}, held-out ({cfg.generate.agent}): {len(held)} queries x {cfg.generate.samples_per_query} "
        f"reports, same sampling seeds; {args.rounds} rounds of training; {minutes:.1f} min"
    )
    print(f"  base model     : {before.line()}")
    print(f"  after training : {after.line()}", flush=True)
    return before, after, minutes, cfg.generate.agent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--heldout", type=int, default=6, help="held-out queries")
    parser.add_argument(
        "--queries",
        choices=("corpus", "config"),
        default="corpus",
        help="corpus: queries about the search corpus's own titles (answerable from it); config: data.queries",
    )
    parser.add_argument("--reports", help="a folder to keep the held-out reports in (seedN-base/trained.parquet)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2: one whole check each")
    args = parser.parse_args()
    runs = [one_seed(args, int(s)) for s in args.seeds.split(",")]
    print(f"change over {len(runs)} seed(s), after - base (mean, 95% t interval over seeds):")
    for name in ("reward", "precision", "graded", "copied", "answered", "cites", "tool_calls", "multi"):
        mean, low, high = mean_interval([getattr(a, name) - getattr(b, name) for b, a, _, _ in runs])
        per_seed = ", ".join(f"{getattr(b, name):.3f} -> {getattr(a, name):.3f}" for b, a, _, _ in runs)
        print(f"  {name:<10} {mean:+.3f} [{low:+.3f}, {high:+.3f}]   per seed: {per_seed}")


if __name__ == "__main__":
    main()
