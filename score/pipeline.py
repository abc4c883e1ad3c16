"""The pipeline of one round, declared: every stage's contract and the statistics its manifest holds.

A contract states once what a stage is: its name, its folder, the artifacts it reads (each by its schema
constant and the stage that writes it), the artifacts it writes, the config it reads (sections, or single
fields as `section.field`) and the inputs that are not this round's artifacts (the queries, the corpus, the
policy weights, the harness). `score.runner` derives everything else from it: the fingerprint that decides
whether a stage is done, the inputs a stage may read, and the config a stage may see (reading anything
undeclared raises at once). The stages' code lives in `score/stages/`, one module each.

    queries ---> generate-reports --reports--> self-evaluate --evaluations--> harness-evolve --> harness r
                      (policy r-1)                 (harness r-1)      |
                                                                      +--> train --> policy r

This module imports nothing heavy: `score inspect` and `score report` read contracts and statistics from it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from score.store.schemas import (
    CITATIONS,
    CONTROLS,
    DECISIONS,
    DIMENSION_STATS,
    EVALUATOR_REWARDS,
    EVIDENCE,
    GOLD,
    HARNESS,
    JUDGEMENT_SPANS,
    PROBES,
    REPORTS,
    RUBRICS,
    SCORES,
    SOLVER_REWARDS,
    SUMMARY,
    TRAIN_SAMPLES,
    TRAIN_STEPS,
    Artifact,
    SummaryRow,
)

Resource = Literal["queries", "corpus", "policy", "judge", "harness", "heldout"]  # judge: the weights evaluating
REWARDS_SEAM = "rewards"  # the reads a reward source other than self-evaluate may supply (benchmarks/learning_check.py)


def derive_seed(base: int, round_idx: int, name: str) -> int:
    """A stable per-(round, stage) seed, so reruns of one stage reproduce it without rerunning the others.

    >>> a, b = derive_seed(0, 1, "generate-reports"), derive_seed(0, 2, "generate-reports")
    >>> a == derive_seed(0, 1, "generate-reports") != b
    True
    """
    return int.from_bytes(hashlib.sha256(f"{base}/{round_idx}/{name}".encode()).digest()[:4], "little")


@dataclass(frozen=True)
class Read:
    stage: str  # the name of the stage that writes it, in the same round
    artifact: Artifact
    seam: str = ""  # non-empty: another stage writing the same artifact may stand in (run_stage's `sources`)


@dataclass(frozen=True)
class Shards:
    """How a stage splits across workers: shard i of n is every n-th of the round's queries, from i, computed by
    `impl` (a StageContext whose `mine()` keeps its share) and written behind its own manifest in its own folder
    (score.store.layout.shard_dir); the stage's `impl` then closes over them (`StageContext.read_shards`), and its
    manifest, written last, is what readers wait for. n is the config field `count`; at 1 the stage runs whole."""

    impl: str  # "module:function" computing one shard: StageContext in, a statistics dict out
    writes: tuple[Artifact, ...]  # what each shard writes
    count: str  # the config path holding n, e.g. "generate.shards" (inside a section the stage declares)


@dataclass(frozen=True)
class StageSpec:
    name: str  # what users type: `score stage NAME`
    folder: str  # its folder inside a round (score.store.layout)
    impl: str  # "module:function" computing it: StageContext in, statistics out
    stats: type  # the statistics dataclass its manifest holds
    reads: tuple[Read, ...] = ()
    writes: tuple[Artifact, ...] = ()
    checkpoint: bool = False  # also writes a checkpoint folder (score.store.layout.CHECKPOINT)
    config: tuple[str, ...] = ()  # config paths its outputs depend on; nothing else is visible to it
    uses: tuple[Resource, ...] = ()
    shards: Shards | None = None  # splits across workers by query (generate-reports, self-evaluate)

    def shard_count(self, cfg) -> int:
        """n: how many shards the stage runs as under `cfg`, a RunConfig or its dict (1: whole, no shard folders)."""
        if self.shards is None:
            return 1
        value = cfg
        for part in self.shards.count.split("."):
            value = value[part] if isinstance(value, dict) else getattr(value, part)
        return value

    def producers(self) -> list[str]:
        return list(dict.fromkeys(r.stage for r in self.reads))


# ---- statistics: one dataclass per stage, what inspect, report, the CLI and the flows read by field -------


@dataclass
class GenerateStats:
    queries: int = 0
    reports: int = 0
    completion_tokens: int = 0
    tokens_per_second: float = 0.0
    mean_report_tokens: float = 0.0
    truncated_share: float = 0.0
    citing_share: float = 0.0
    plan_fallback_share: float = 0.0
    mean_tool_calls: float = 0.0  # plan: its searches
    multi_call_share: float = 0.0  # trajectories with at least 2 tool calls
    answer_rate: float = 0.0  # react: trajectories that answered (plan: always 1)
    cut_rate: float = 0.0  # react: trajectories its budget ended before an answer
    tool_errors: int = 0  # react: malformed calls, unknown tools, missing sources, failed or empty searches
    mean_turns: float = 0.0  # react: model turns per trajectory
    # gold measures of the round's reports (score.gold; null: the queries have no such gold), never a reward
    found_recall: float | None = None  # gold passages among the sources met
    gold_recall: float | None = None  # gold passages among the sources cited
    gold_precision: float | None = None  # cited sources that are gold
    answer_accuracy: float | None = None  # reports stating the gold answer, of queries with one


@dataclass(frozen=True)
class EvaluateStats(SummaryRow):
    """The round's summary (summary.parquet, rounded to 4 places: `SummaryRow`) and the stage's cost."""

    seconds_per_report: float = 0.0


@dataclass
class EvolveStats:
    version: int = -1
    active: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    decisions: int = 0
    search_depth: int = 0
    search_hops: int = 0
    criteria_per_dimension: int = 0
    strictness: int = 0
    alarms: int = 0  # judge-hacking alarms raised this round


@dataclass
class TrainStats:
    method: str = "lora"
    samples: int = 0
    solver_samples: int = 0
    evaluator_samples: int = 0
    judgement_samples: int = 0  # scores, and the rationales before them (evaluate.rationale_tokens)
    judgement_samples_left_out: int = 0  # train.judgement_prefixes
    verdict_samples: int = 0
    followup_samples: int = 0
    verdict_samples_left_out: int = 0  # train.verdict_prefixes
    solver_groups: int = 0
    solver_flat_groups: int = 0
    evaluator_groups: int = 0
    evaluator_flat_groups: int = 0
    steps: int = 0
    global_step: int = 0
    processes: int = 1  # the trainer's processes (under accelerate launch: one per device)
    trainable_parameters: int = 0
    trainable_tokens: int = 0
    tokens_per_second: float = 0.0
    loss_first: float | None = None
    loss_last: float | None = None
    kl_mean: float | None = None
    clip_frac_mean: float | None = None
    evaluator_update_share: float | None = None  # the evaluator's share of the round's update, by weight
    evaluator_token_share: float | None = None  # its share of the trainable tokens, by count, for contrast
    old_logprobs: str = "sampler"  # the ratio's denominators: the sampler's, or the trainer's own (recomputed)
    sampler_gap_mean: float | None = None  # mean |trainer - sampler| log-prob per written token at the round's start
    sampler_gap_max: float | None = None  # (over the tokens where it is known: the first step's, all when recomputed)
    trained_nothing: bool = False  # no group had spread: the checkpoint is the previous policy's weights, unchanged
    untrained_roles: list[str] = field(default_factory=list)  # weighted roles that trained on no sample this round
    note: str = ""  # what went untrained, and why, in words ("" when both roles trained)
    train_seconds: float = 0.0
    resumed_from: str = "base"


# ---- the four stages ------------------------------------------------------------------------------------

GENERATE = StageSpec(
    name="generate-reports",
    folder="generate",
    impl="score.stages.generate:run",
    stats=GenerateStats,
    writes=(REPORTS, GOLD),
    shards=Shards("score.stages.generate:shard", (REPORTS, GOLD), "generate.shards"),
    config=(
        "seed",
        "model",
        "search",
        "data.queries",
        "data.id_column",
        "data.query_column",
        "data.queries_per_round",
        "generate",
    ),  # not data.heldout*: the held-out measures (score.gold) are no input of the round
    uses=("queries", "corpus", "policy"),
)

EVALUATE = StageSpec(
    name="self-evaluate",
    folder="evaluate",
    impl="score.stages.evaluate:run",
    stats=EvaluateStats,
    reads=(Read("generate-reports", REPORTS),),
    writes=(
        RUBRICS,
        EVIDENCE,
        CITATIONS,
        PROBES,
        SCORES,
        JUDGEMENT_SPANS,
        SOLVER_REWARDS,
        EVALUATOR_REWARDS,
        DIMENSION_STATS,
        SUMMARY,
    ),
    config=(
        "seed",
        "model",
        "search",
        "evaluate",
        "reward",
        "harness.rules.crowded_reward",
        "harness.rules.confidence",
    ),  # read by the statistics
    uses=("corpus", "judge", "harness"),
    shards=Shards(
        "score.stages.evaluate:shard",
        (RUBRICS, EVIDENCE, CITATIONS, PROBES, SCORES, JUDGEMENT_SPANS),
        "evaluate.shards",
    ),
)

EVOLVE = StageSpec(
    name="harness-evolve",
    folder="harness",
    impl="score.stages.evolve:run",
    stats=EvolveStats,
    reads=(Read("self-evaluate", DIMENSION_STATS), Read("self-evaluate", SUMMARY), Read("self-evaluate", RUBRICS)),
    writes=(HARNESS, CONTROLS, DECISIONS),
    config=("seed", "harness"),
    uses=("harness", "heldout", "queries", "corpus"),  # queries and corpus: the words proposals are checked against
)

TRAIN = StageSpec(
    name="train",
    folder="train",
    impl="score.stages.train:run",
    stats=TrainStats,
    reads=(
        Read("generate-reports", REPORTS),
        Read("self-evaluate", SOLVER_REWARDS, seam=REWARDS_SEAM),
        Read("self-evaluate", RUBRICS, seam=REWARDS_SEAM),
        Read("self-evaluate", EVALUATOR_REWARDS, seam=REWARDS_SEAM),
        Read("self-evaluate", JUDGEMENT_SPANS, seam=REWARDS_SEAM),
        Read("self-evaluate", EVIDENCE, seam=REWARDS_SEAM),
        Read("self-evaluate", CITATIONS, seam=REWARDS_SEAM),
    ),
    writes=(TRAIN_SAMPLES, TRAIN_STEPS),
    checkpoint=True,
    # campaign.rounds: the cosine schedule's horizon; reward.flat_spread: the one flat threshold
    config=("seed", "model", "train", "campaign.rounds", "reward.flat_spread"),
    uses=("policy",),
)

# what a checkpoint's research outside a round depends on (benchmark reports, held-out gold): generate's config
# without the round's queries
RESEARCH_CONFIG: tuple[str, ...] = tuple(p for p in GENERATE.config if not p.startswith("data"))

# what a reward source standing in for self-evaluate writes: every artifact train reads through the rewards seam
REWARDS_ARTIFACTS: tuple[Artifact, ...] = tuple(r.artifact for r in TRAIN.reads if r.seam == REWARDS_SEAM)

STAGES: tuple[StageSpec, ...] = (GENERATE, EVALUATE, EVOLVE, TRAIN)  # in round order
STAGE_NAMES = tuple(s.name for s in STAGES)
StageName = Literal["generate-reports", "self-evaluate", "harness-evolve", "train"]  # STAGE_NAMES, as a type: the
# Prefect UI's custom-run form offers them as a choice (tests/test_contracts.py keeps the two the same)


class UnknownStage(ValueError):
    pass


def stage(name: str) -> StageSpec:
    """The contract of stage `name`; raises, listing the stages, for any other name.

    >>> stage("train").folder
    'train'
    """
    for s in STAGES:
        if s.name == name:
            return s
    raise UnknownStage(f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}")
