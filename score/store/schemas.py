"""The contract between stages: one pyarrow schema per artifact, shared by writer, reader and tests, and the
check a reader applies (`check_schema`: an error naming the file and the column on any mismatch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from score.store.rows import arrow_schema, column

# ---- schemas: one constant per artifact, shared by writer, reader and tests --------------------------------

SPAN = pa.struct(
    [
        ("name", pa.string()),  # trajectory | plan | report | rubric | judgement | ...
        ("prefix", pa.string()),  # a prompt head shared with sibling spans, encoded once ("" for none)
        ("prompt", pa.string()),  # the exact rendered prompt the model continued (after the prefix)
        ("text", pa.string()),
        ("token_ids", pa.list_(pa.int32())),  # what the model wrote: the only tokens that carry loss
        ("logprobs", pa.list_(pa.float32())),  # log-prob of each token under the distribution it was sampled from
        ("temperature", pa.float32()),  # that distribution: softmax(logits / temperature), top-p 1
        ("finish_reason", pa.string()),  # stop | length (| cut: a react trajectory that ended without an answer)
        ("mask", pa.list_(pa.int8())),  # per token_ids: 1 written by the model, 0 a tool's output (null: all written)
        ("choices", pa.list_(pa.list_(pa.int32()))),  # per token_ids: the answer set it was drawn from (null: vocab)
    ]
)


def span_row(
    name: str, prompt: str, sample, temperature: float, prefix: str = "", mask: list[int] | None = None
) -> dict:
    """A sampled span as stored (SPAN): what the model saw (`prefix + prompt`), what it wrote (a backend Sample or
    WrittenScore-like object with text, token_ids, logprobs, finish_reason), and the distribution it wrote from."""
    return {
        "name": name,
        "prefix": prefix,
        "prompt": prompt,
        "text": sample.text,
        "token_ids": sample.token_ids,
        "logprobs": sample.logprobs,
        "temperature": temperature,
        "finish_reason": sample.finish_reason,
        "mask": mask,
        "choices": getattr(sample, "choices", None),
    }


SEARCH_CALL = pa.struct(
    [("query", pa.string()), ("passage_ids", pa.list_(pa.string())), ("scores", pa.list_(pa.float32()))]
)
SOURCE = pa.struct(
    [
        ("n", pa.int32()),
        ("passage_id", pa.string()),
        ("title", pa.string()),
        ("url", pa.string()),
        ("text", pa.string()),
    ]
)

TURN = pa.struct(
    [
        ("written", pa.string()),  # the model's turn, up to its call
        ("tool", pa.string()),  # search | read | answer | end (no call: the report) | error | cut
        ("argument", pa.string()),
        ("output", pa.string()),  # the tool's output as the model read it
        ("passage_ids", pa.list_(pa.string())),
        ("error", pa.string()),  # "" | malformed | unknown_tool | no_source | search_failed | no_results | over_budget
    ]
)

REPORTS_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("query", pa.string(), nullable=False),
        pa.field("sample_idx", pa.int32(), nullable=False),  # 0..K-1 within the query's group
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("plan", pa.list_(pa.string())),  # sub-questions parsed from the plan span
        pa.field("plan_fallback", pa.bool_()),  # true when no sub-question parsed and the query itself was searched
        pa.field("searches", pa.list_(SEARCH_CALL)),
        pa.field("sources", pa.list_(SOURCE)),  # what the writer saw, numbered as it may cite them
        pa.field("report", pa.string()),
        pa.field("cited", pa.list_(pa.int32())),  # distinct valid [n] the report cites, in order of first use
        pa.field("finish_reason", pa.string()),  # of the report span
        pa.field("spans", pa.list_(SPAN)),
        pa.field("prompt_tokens", pa.int32()),
        pa.field("completion_tokens", pa.int32()),
        pa.field("checkpoint", pa.string()),  # weights that sampled: "base" or the store address of a checkpoint
        pa.field("seed", pa.int64()),
        pa.field("agent", pa.string()),  # react | plan (generate.agent)
        pa.field("turns", pa.list_(TURN)),  # react: each model turn and the tool output answering it
        pa.field("tool_calls", pa.int32()),  # react: calls made (errors included); plan: the searches
        pa.field("answered", pa.bool_()),  # false: a react trajectory cut by its budget before any answer
    ]
)

RUBRICS_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("rubric_idx", pa.int32(), nullable=False),  # 0..J-1
        pa.field("harness_version", pa.int32()),  # the harness it was written under (-1: the seed)
        pa.field("span", SPAN),  # what the evaluator wrote (trainable), after the prefilled '{"weights": {'
        pa.field("status", pa.string()),  # ok | repaired | failed (see score.rubrics)
        pa.field("repairs", pa.list_(pa.string())),
        pa.field("weights", pa.list_(pa.struct([("dimension", pa.string()), ("weight", pa.float32())]))),
        pa.field(
            "criteria", pa.list_(pa.struct([("dimension", pa.string()), ("text", pa.string()), ("shadow", pa.bool_())]))
        ),
        pa.field("proposal_name", pa.string()),  # a new dimension the evaluator proposed (null: none)
        pa.field("proposal_description", pa.string()),
    ]
)

SCORES_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("rubric_idx", pa.int32(), nullable=False),
        pa.field("pass_idx", pa.int32(), nullable=False),  # 0..m-1: passes with another sibling and evidence order
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("probe_kind", pa.string()),  # "" for the report itself, else the corruption of the copy scored
        pa.field("dimension", pa.string()),
        pa.field("criterion", pa.string()),
        pa.field("shadow", pa.bool_()),  # a candidate dimension on probation: scored, never rewarded
        pa.field("expected", pa.float32()),  # the read-off: expectation over the 0-10 score-token probabilities
        pa.field("written", pa.float32()),  # the score the evaluator wrote (null: unparsable)
        pa.field("score", pa.float32()),  # the score used (evaluate.score_source)
        pa.field("score_source", pa.string()),  # expected | written | expected (unparsable): what became `score`
    ]
)

JUDGEMENT_SPANS_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("probe_kind", pa.string()),  # "" for the report itself, else the corruption of the copy judged
        pa.field("pass_idx", pa.int32(), nullable=False),
        pa.field("dimension", pa.string()),
        pa.field("criterion", pa.string()),
        pa.field("sibling_id", pa.string()),  # the sibling report shown beside it in this pass ("" for none)
        pa.field("report_cut", pa.bool_()),  # the evaluator saw only evaluate.report_chars of the report
        pa.field("span", SPAN),  # what the evaluator wrote (trainable): prefix = the report and its context
        pa.field("rationale_span", SPAN),  # the reasoning written before it (evaluate.rationale_tokens; null: none)
        pa.field("written", pa.float32()),  # the parsed score (null: unparsable)
        pa.field("expected", pa.float32()),  # the read-off beside it (diagnostic)
        pa.field("distribution", pa.list_(pa.float32())),  # the 11-way restricted distribution it was drawn from
        pa.field("reward_kind", pa.string()),  # pair | consistency | "" (not rewarded: not trained)
        pa.field("reward", pa.float32()),  # the evaluator's reward for this judgement (null: not rewarded)
    ]
)

EVIDENCE_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("probe_kind", pa.string()),  # "" for the report, else the corrupted copy whose claims were checked
        pa.field("deeper", pa.bool_()),  # a re-check of the same claim with more search, not used for scores
        pa.field("claim_idx", pa.int32()),
        pa.field("claim", pa.string()),
        pa.field("cited", pa.list_(pa.int32())),
        pa.field("queries", pa.list_(pa.string())),  # the search calls made, one per hop
        pa.field("passage_ids", pa.list_(pa.string())),  # shown to the evaluator: the cited passages, then found
        pa.field("span", SPAN),  # the verdict the evaluator wrote on the claim (trainable; null: nothing to show)
        pa.field("written", pa.string()),  # its parse: supported | contradicted | not_found (null: unparsable)
        pa.field("anchor_claim", pa.string()),  # the claim with an entity swapped (null: nothing to swap)
        pa.field("anchor_span", SPAN),  # the verdict written on the anchor, against the same passages
        pa.field("anchor_written", pa.string()),
        pa.field("reward", pa.float32()),  # the pair's anchor credit (unparsable: reward.unparsable_judgement)
        pa.field("anchor_reward", pa.float32()),
        pa.field("p_yes", pa.float32()),  # the read-off: answer probabilities after contextual calibration
        pa.field("p_no", pa.float32()),
        pa.field("p_unclear", pa.float32()),
        pa.field("verdict", pa.string()),  # the one the round uses (evaluate.verdict_source)
        pa.field("separation", pa.float32()),  # calibrated P(yes) of the claim less that of its anchor (null: none)
        pa.field("followup_query", pa.string()),  # a re-check's own search query, which the evaluator wrote ...
        pa.field("followup_span", SPAN),  # ... as a trainable span
        pa.field("followup_reward", pa.float32()),  # the change of the claim's separation over its first check
    ]
)

CITATIONS_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("claim_idx", pa.int32()),
        pa.field("claim", pa.string()),  # a sentence of the report that cites
        pa.field("cited", pa.list_(pa.int32())),
        pa.field("passage_ids", pa.list_(pa.string())),  # the passages it cites, all it is checked against
        pa.field("span", SPAN),  # the verdict the evaluator wrote (trainable with its anchor, as evidence verdicts)
        pa.field("written", pa.string()),
        pa.field("anchor_claim", pa.string()),
        pa.field("anchor_span", SPAN),
        pa.field("anchor_written", pa.string()),
        pa.field("reward", pa.float32()),
        pa.field("anchor_reward", pa.float32()),
        pa.field("p_yes", pa.float32()),
        pa.field("p_no", pa.float32()),
        pa.field("p_unclear", pa.float32()),
        pa.field("verdict", pa.string()),  # supported counts toward the report's citation precision
        pa.field("separation", pa.float32()),
    ]
)

PROBES_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("kind", pa.string()),
        pa.field("changed", pa.bool_()),  # false when the report had nothing to damage (not scored)
        pa.field("text", pa.string()),
    ]
)

SOLVER_REWARDS_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("validity", pa.float32()),
        pa.field("citation_precision", pa.float32()),  # cited claims supported by their cited passages (null: none)
        pa.field("score", pa.float32()),  # mean rubric score over rubrics and passes, in [0, 1]
        pa.field("reward", pa.float32()),  # validity * score
        pa.field("group_mean", pa.float32()),
        pa.field("group_std", pa.float32()),
    ]
)

EVALUATOR_REWARDS_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("rubric_idx", pa.int32(), nullable=False),
        pa.field("status", pa.string()),  # ok | repaired | failed: a failed rubric earns reward.failed_rubric
        pa.field("agreement", pa.float32()),  # mean consistency reward of the judgements on its criteria
        pa.field("detection", pa.float32()),  # its weighted score: share of (probed report, pass) above the copy
        pa.field("probe_pairs", pa.int32()),  # the copies' pair-credited judgements on its criteria
        pa.field("reward", pa.float32()),  # score.rewards.rubric_reward (failed: reward.failed_rubric)
    ]
)

DIMENSION_STATS_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("dimension", pa.string(), nullable=False),
        pa.field("status", pa.string()),  # active | candidate, in the harness the round ran under
        pa.field("mean", pa.float32()),  # over the reports' own scores (not corrupted copies)
        pa.field("mean_low", pa.float32()),  # its one-sided lower bound (harness.rules.confidence)
        pa.field("reports", pa.int32()),  # distinct reports scored on it
        pa.field("spread", pa.float32()),  # mean over queries of the within-query std over the K reports
        pa.field("queries", pa.int32()),  # distinct queries with two or more reports scored on it
        pa.field("probed", pa.bool_()),  # some corruption damages it (evaluate.probe_dimensions)
        pa.field("detected", pa.float32()),  # probed reports whose original outscored the copy (ties half) ...
        pa.field("probes", pa.int32()),  # ... of this many distinct probed reports
        pa.field("detection", pa.float32()),  # detected / probes (0.5 with none)
        pa.field("detection_low", pa.float32()),  # its Wilson interval (harness.rules.confidence, one-sided)
        pa.field("detection_high", pa.float32()),
        pa.field("max_corr", pa.float32()),  # the highest within-query correlation with another dimension ...
        pa.field("max_corr_with", pa.string()),  # ... with this one
        pa.field(
            "partners",  # the within-query correlation with every other dimension scored, over pairs - queries
            pa.list_(pa.struct([("dimension", pa.string()), ("corr", pa.float32()), ("n", pa.int32())])),
        ),
    ]
)


@dataclass(frozen=True)
class SummaryRow:
    """summary.parquet: the round's statistics, one row (self-evaluate; the stage's statistics extend it)."""

    round: int = column(pa.int32(), "the round", default=0, nullable=False)
    harness_version: int = column(pa.int32(), "the harness the round was judged under", default=-1)
    reports: int = column(pa.int32(), "solver reports judged", default=0)
    saturation_rate: float = column(
        pa.float32(), "share of queries whose solver rewards are flat (std <= reward.flat_spread)", default=0.0,
        label="saturation (share of queries with flat rewards)",
    )  # fmt: skip
    reward_mean: float = column(pa.float32(), "mean solver reward", default=0.0, label="solver reward, mean")
    reward_spread: float = column(
        pa.float32(), "mean within-query std of solver rewards", default=0.0,
        label="solver reward, mean within-query std",
    )  # fmt: skip
    valid_share: float = column(
        pa.float32(), "share of reports with validity > 0", default=0.0, label="share of reports valid"
    )
    valid_reports: int = column(pa.int32(), "fully valid reports (validity 1)", default=0, label="fully valid reports")
    top_share: float = column(
        pa.float32(), "share of them rewarded at or above rules.crowded_reward", default=0.0,
        label="share of those at the top",
    )  # fmt: skip
    agreement: float = column(
        pa.float32(), "mean consistency of the written judgement columns (criterion x pass)", default=0.0,
        label="judgement consistency (leave-one-out, 0 when flat)",
    )  # fmt: skip
    score_spread: float = column(
        pa.float32(), "mean within-column std of written scores over the K reports", default=0.0,
        label="written scores, mean within-column std",
    )  # fmt: skip
    detection: float = column(
        pa.float32(), "distinct probed reports scored below their original (mapped dimensions)", default=0.0,
        label="corruption detection, distinct probed reports (chance 50%)",
    )  # fmt: skip
    probed_reports: int = column(
        pa.int32(), "distinct (report, corruption) pairs with a comparison", default=0, label="probed reports compared"
    )
    judgements: int = column(pa.int32(), "scores the evaluator wrote", default=0)
    unparsable_rate: float = column(
        pa.float32(), "judgements that wrote no score in 0-10", default=0.0, label="share of judgements with no score"
    )
    reports_cut: int = column(pa.int32(), "reports and copies the evaluator saw only part of (report_chars)", default=0)
    parse_failure_rate: float = column(pa.float32(), "rubrics with nothing usable", default=0.0)
    parse_repair_rate: float = column(
        pa.float32(), "rubrics needing any repair or fallback", default=0.0, label="share of rubrics needing repair"
    )
    identical_rubric_queries: int = column(
        pa.int32(), "queries whose J rubrics are all alike: a flat rubric group", default=0,
        label="queries whose rubrics are all alike (flat rubric group)",
    )  # fmt: skip
    search_depth: int = column(
        pa.int32(), "claims checked per report", default=0, label="search depth (claims checked per report)"
    )
    search_hops: int = column(pa.int32(), "search calls per claim", default=0, label="search hops (calls per claim)")
    claims_checked: int = column(pa.int32(), "claims of the reports checked against evidence", default=0)
    search_calls: int = column(
        pa.int32(), "search calls made for them (search_hops each)", default=0, label="search calls made"
    )
    supported_share: float = column(
        pa.float32(), "share of them judged supported", default=0.0, label="share of claims supported by evidence"
    )
    citation_precision: float = column(
        pa.float32(), "mean over reports with checked cited claims of the share supported by their cited passages",
        default=0.0, label="citation precision (cited claims supported by their cited passages)",
    )  # fmt: skip
    citation_claims: int = column(
        pa.int32(), "cited claims checked against their cited passages", default=0, label="cited claims checked"
    )
    depth_claims: int = column(
        pa.int32(), "claims re-checked with more search (depth-probed reports)", default=0, label="claims re-checked"
    )
    depth_change: float = column(
        pa.float32(), "their mean signed change of support, P(yes) - P(no)", default=0.0,
        label="support change when re-checked with more search",
    )  # fmt: skip
    depth_low: float = column(pa.float32(), "its two-sided 95% interval, low", default=0.0)
    depth_high: float = column(pa.float32(), "its two-sided 95% interval, high", default=0.0)
    verdicts: int = column(pa.int32(), "evidence verdicts the evaluator wrote (claims and their anchors)", default=0)
    verdict_unparsable_rate: float = column(
        pa.float32(), "written verdicts that are none of Yes / No / Unclear", default=0.0
    )
    anchors: int = column(pa.int32(), "(claim, anchor) pairs with both verdicts parsed", default=0)
    anchor_detection: float = column(
        pa.float32(), "their mean anchor credit: anchors given less support (ties half)", default=0.0
    )
    active_dimensions: list[str] = column(
        pa.list_(pa.string()), "the harness's active dimensions", factory=list, label="active dimensions"
    )
    strictness: int = column(pa.int32(), "the harness's strictness", default=0, label="strictness")


SUMMARY_SCHEMA = arrow_schema(SummaryRow)

HARNESS_SCHEMA = pa.schema(
    [
        pa.field("version", pa.int32(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("description", pa.string()),
        pa.field("origin", pa.string()),  # seed | proposed
        pa.field("status", pa.string()),  # candidate | active | retired
        pa.field("uses_evidence", pa.bool_()),
        pa.field("changed_round", pa.int32()),
        pa.field("saturated_rounds", pa.int32()),
        pa.field("probation_rounds", pa.int32()),
        pa.field("probe_n", pa.int32()),  # probed reports gathered since the status last changed ...
        pa.field("probe_points", pa.float32()),  # ... of which detected (ties half)
    ]
)

CONTROLS_SCHEMA = pa.schema(
    [
        pa.field("version", pa.int32(), nullable=False),
        pa.field("search_depth", pa.int32()),
        pa.field("search_hops", pa.int32()),
        pa.field("criteria_per_dimension", pa.int32()),
        pa.field("strictness", pa.int32()),
    ]
)

DECISIONS_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("rule", pa.string()),
        pa.field("target", pa.string()),
        pa.field("action", pa.string()),
        pa.field("numbers", pa.string()),  # JSON of the statistics the rule read
        pa.field("reason", pa.string()),
    ]
)

TRAIN_SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("role", pa.string(), nullable=False),  # solver | evaluator
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string()),  # trajectory_id (solver), "rubric-<j>", or trajectory/copy/pass/dimension
        pa.field("span", pa.string()),  # plan | report | rubric | judgement
        pa.field("prefix", pa.string()),  # masked, shared by sibling spans and encoded once by the trainer
        pa.field("prompt", pa.string()),  # masked: prompts, search results and quoted evidence carry no loss
        pa.field("token_ids", pa.list_(pa.int32())),  # what the model wrote (and a trajectory's tool outputs)
        pa.field("logprobs", pa.list_(pa.float32())),  # at sampling time: the importance ratios' denominators
        pa.field("mask", pa.list_(pa.int8())),  # 1: written, with loss; 0: a tool's output (null: all written)
        pa.field("choices", pa.list_(pa.list_(pa.int32()))),  # per token: its answer set (null: the vocabulary)
        pa.field("temperature", pa.float32()),  # they are of softmax(logits / temperature): the trainer's too
        pa.field("reward", pa.float32()),
        pa.field("advantage", pa.float32()),  # normalised within its group (see score.stages.train)
    ]
)

TRAIN_STEPS_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),  # global optimizer step over the campaign
        pa.field("epoch", pa.int32()),
        pa.field("samples", pa.int32()),
        pa.field("tokens", pa.int32()),  # trainable (written) tokens
        pa.field("padded_tokens", pa.int32()),  # tokens the forwards processed, prompts and padding included
        pa.field("loss", pa.float32()),
        pa.field("pg", pa.float32()),
        pa.field("kl", pa.float32()),  # mean k3 per trainable token
        pa.field("clip_frac", pa.float32()),
        pa.field("ratio_mean", pa.float32()),
        pa.field("grad_norm", pa.float32()),
        pa.field("lr", pa.float32()),
        pa.field("seconds", pa.float32()),
        pa.field("evaluator_share", pa.float32()),  # the evaluator's share of the step's update, by weight
        pa.field("evaluator_token_share", pa.float32()),  # and of its trainable tokens, by count
    ]
)

# ---- benchmark evaluation (score eval): {run}/benchmark/{checkpoint}/ -----------------------------------
JUDGEMENTS_SCHEMA = pa.schema(
    [
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("run_idx", pa.int32(), nullable=False),  # judge run; run i puts the target first when i is even
        pa.field("seed", pa.int64()),
        pa.field("target_first", pa.bool_()),
        pa.field("dimension", pa.string()),
        pa.field("criterion", pa.string()),
        pa.field("weight", pa.float64()),
        pa.field("target", pa.float64()),  # the run's 0-10 score of the checkpoint's report
        pa.field("reference", pa.float64()),  # and of the reference report
        pa.field(
            "target_expected", pa.float64()
        ),  # local judges: the mean of the score distribution (null for endpoints)
        pa.field("reference_expected", pa.float64()),
    ]
)

TASK_SCORES_SCHEMA = pa.schema(
    [
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("run_idx", pa.int32(), nullable=False),
        pa.field("dimension", pa.string()),  # one of the task's dimensions, or "overall"
        pa.field("target", pa.float64()),  # S_tgt (0-10)
        pa.field("reference", pa.float64()),  # S_ref
        pa.field("score", pa.float64()),  # S_tgt / (S_tgt + S_ref); 0.5: as good as the reference
    ]
)

_SPREAD_FIELDS = [
    pa.field("mean", pa.float64()),  # over judge runs
    pa.field("std", pa.float64()),  # population standard deviation over judge runs
    pa.field("min", pa.float64()),
    pa.field("max", pa.float64()),
    pa.field("runs", pa.int32()),
]
TASK_SPREAD_SCHEMA = pa.schema(
    [pa.field("task_id", pa.string(), nullable=False), pa.field("dimension", pa.string()), *_SPREAD_FIELDS]
)
BENCHMARK_SCHEMA = pa.schema(
    [pa.field("dimension", pa.string(), nullable=False), *_SPREAD_FIELDS, pa.field("tasks", pa.int32())]
)


@dataclass
class BenchmarkStats:
    """What a benchmark folder's manifest holds (written by score.benchmark, read by the alarm and the report)."""

    benchmark: str = ""
    checkpoint: str = ""
    judge: str = ""
    reference: str = ""
    tasks: int = 0
    judge_runs: int = 0
    score: float = 0.5
    score_std: float = 0.0
    dimensions: dict[str, float] = field(default_factory=dict)  # dimension -> mean score over runs
    unparsed_scores: int = 0
    seconds_reports: float = 0.0
    seconds_judge: float = 0.0


@dataclass(frozen=True)
class Artifact:
    """One artifact: its file name inside a folder and its schema. Stage contracts name their inputs and outputs
    by these constants."""

    file: str
    schema: pa.Schema


REPORTS = Artifact("reports.parquet", REPORTS_SCHEMA)
RUBRICS = Artifact("rubrics.parquet", RUBRICS_SCHEMA)
SCORES = Artifact("scores.parquet", SCORES_SCHEMA)
JUDGEMENT_SPANS = Artifact("judgement_spans.parquet", JUDGEMENT_SPANS_SCHEMA)
EVIDENCE = Artifact("evidence.parquet", EVIDENCE_SCHEMA)
PROBES = Artifact("probes.parquet", PROBES_SCHEMA)
CITATIONS = Artifact("citations.parquet", CITATIONS_SCHEMA)
SOLVER_REWARDS = Artifact("solver_rewards.parquet", SOLVER_REWARDS_SCHEMA)
EVALUATOR_REWARDS = Artifact("evaluator_rewards.parquet", EVALUATOR_REWARDS_SCHEMA)
DIMENSION_STATS = Artifact("dimension_stats.parquet", DIMENSION_STATS_SCHEMA)
SUMMARY = Artifact("summary.parquet", SUMMARY_SCHEMA)
HARNESS = Artifact("harness.parquet", HARNESS_SCHEMA)
CONTROLS = Artifact("controls.parquet", CONTROLS_SCHEMA)
DECISIONS = Artifact("decisions.parquet", DECISIONS_SCHEMA)
TRAIN_SAMPLES = Artifact("samples.parquet", TRAIN_SAMPLES_SCHEMA)
TRAIN_STEPS = Artifact("steps.parquet", TRAIN_STEPS_SCHEMA)
JUDGEMENTS = Artifact("judgements.parquet", JUDGEMENTS_SCHEMA)
TASK_SCORES = Artifact("task_scores.parquet", TASK_SCORES_SCHEMA)
TASK_SPREAD = Artifact("task_spread.parquet", TASK_SPREAD_SCHEMA)
BENCHMARK = Artifact("benchmark.parquet", BENCHMARK_SCHEMA)

SCHEMAS: dict[str, pa.Schema] = {
    a.file: a.schema
    for a in (
        REPORTS,
        RUBRICS,
        SCORES,
        JUDGEMENT_SPANS,
        EVIDENCE,
        CITATIONS,
        PROBES,
        SOLVER_REWARDS,
        EVALUATOR_REWARDS,
        DIMENSION_STATS,
        SUMMARY,
        HARNESS,
        CONTROLS,
        DECISIONS,
        TRAIN_SAMPLES,
        TRAIN_STEPS,
        JUDGEMENTS,
        TASK_SCORES,
        TASK_SPREAD,
        BENCHMARK,
    )
}


class ArtifactError(RuntimeError):
    """A missing, unfinished or malformed artifact; the message names the file and what to do."""


def check_schema(actual: pa.Schema, expected: pa.Schema, where: str) -> None:
    for want in expected:
        if want.name not in actual.names:
            raise ArtifactError(f"{where}: column {want.name!r} is missing (expected {want.type})")
        got = actual.field(want.name).type
        if got != want.type:
            raise ArtifactError(f"{where}: column {want.name!r} has type {got}, expected {want.type}")
    extra = [n for n in actual.names if n not in expected.names]
    if extra:
        raise ArtifactError(f"{where}: unexpected column(s) {extra}; the file was written by another schema version")
