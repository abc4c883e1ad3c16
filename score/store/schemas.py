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


@dataclass(frozen=True)
class ReportRow:
    """reports.parquet: one solver trajectory and its report (generate-reports)."""

    round: int = column(pa.int32(), nullable=False)
    query_id: str = column(pa.string(), nullable=False)
    query: str = column(pa.string(), nullable=False)
    sample_idx: int = column(pa.int32(), "0..K-1 within the query's group", nullable=False)
    trajectory_id: str = column(pa.string(), nullable=False)
    plan: list | None = column(pa.list_(pa.string()), "sub-questions parsed from the plan span")
    plan_fallback: bool | None = column(
        pa.bool_(), "true when no sub-question parsed and the query itself was searched"
    )
    searches: list | None = column(pa.list_(SEARCH_CALL))
    sources: list | None = column(pa.list_(SOURCE), "what the writer saw, numbered as it may cite them")
    report: str | None = column(pa.string())
    cited: list | None = column(pa.list_(pa.int32()), "distinct valid [n] the report cites, in order of first use")
    finish_reason: str | None = column(pa.string(), "of the report span")
    spans: list | None = column(pa.list_(SPAN))
    prompt_tokens: int | None = column(pa.int32())
    completion_tokens: int | None = column(pa.int32())
    checkpoint: str | None = column(pa.string(), 'weights that sampled: "base" or the store address of a checkpoint')
    seed: int | None = column(pa.int64())
    agent: str | None = column(pa.string(), "react | plan (generate.agent)")
    turns: list | None = column(pa.list_(TURN), "react: each model turn and the tool output answering it")
    tool_calls: int | None = column(pa.int32(), "react: calls made (errors included); plan: the searches")
    answered: bool | None = column(pa.bool_(), "false: a react trajectory cut by its budget before any answer")


REPORTS_SCHEMA = arrow_schema(ReportRow)


@dataclass(frozen=True)
class RubricRow:
    """rubrics.parquet: one rubric the evaluator wrote for a query (self-evaluate)."""

    round: int = column(pa.int32(), nullable=False)
    query_id: str = column(pa.string(), nullable=False)
    rubric_idx: int = column(pa.int32(), "0..J-1", nullable=False)
    harness_version: int | None = column(pa.int32(), "the harness it was written under (-1: the seed)")
    span: dict | None = column(SPAN, "what the evaluator wrote (trainable), after the prefilled '{\"weights\": {'")
    status: str | None = column(pa.string(), "ok | repaired | failed (see score.rubrics)")
    repairs: list | None = column(pa.list_(pa.string()))
    weights: list | None = column(pa.list_(pa.struct([("dimension", pa.string()), ("weight", pa.float32())])))
    criteria: list | None = column(
        pa.list_(pa.struct([("dimension", pa.string()), ("text", pa.string()), ("shadow", pa.bool_())]))
    )
    proposal_name: str | None = column(pa.string(), "a new dimension the evaluator proposed (null: none)")
    proposal_description: str | None = column(pa.string())


RUBRICS_SCHEMA = arrow_schema(RubricRow)


@dataclass(frozen=True)
class ScoreRow:
    """scores.parquet: one written score as a rubric reads it (self-evaluate)."""

    round: int = column(pa.int32(), nullable=False)
    query_id: str = column(pa.string(), nullable=False)
    rubric_idx: int = column(pa.int32(), nullable=False)
    pass_idx: int = column(pa.int32(), "0..m-1: passes with another sibling and evidence order", nullable=False)
    trajectory_id: str = column(pa.string(), nullable=False)
    probe_kind: str | None = column(pa.string(), '"" for the report itself, else the corruption of the copy scored')
    dimension: str | None = column(pa.string())
    criterion: str | None = column(pa.string())
    shadow: bool | None = column(pa.bool_(), "a candidate dimension on probation: scored, never rewarded")
    expected: float | None = column(pa.float32(), "the read-off: expectation over the 0-10 score-token probabilities")
    written: float | None = column(pa.float32(), "the score the evaluator wrote (null: unparsable)")
    score: float | None = column(pa.float32(), "the score used (evaluate.score_source)")
    score_source: str | None = column(pa.string(), "expected | written | expected (unparsable): what became `score`")


SCORES_SCHEMA = arrow_schema(ScoreRow)


@dataclass(frozen=True)
class JudgementRow:
    """judgement_spans.parquet: one score the evaluator wrote, as a trainable span (self-evaluate)."""

    round: int = column(pa.int32(), nullable=False)
    query_id: str = column(pa.string(), nullable=False)
    trajectory_id: str = column(pa.string(), nullable=False)
    probe_kind: str | None = column(pa.string(), '"" for the report itself, else the corruption of the copy judged')
    pass_idx: int = column(pa.int32(), nullable=False)
    dimension: str | None = column(pa.string())
    criterion: str | None = column(pa.string())
    sibling_id: str | None = column(pa.string(), 'the sibling report shown beside it in this pass ("" for none)')
    report_cut: bool | None = column(pa.bool_(), "the evaluator saw only evaluate.report_chars of the report")
    span: dict | None = column(SPAN, "what the evaluator wrote (trainable): prefix = the report and its context")
    rationale_span: dict | None = column(
        SPAN, "the reasoning written before it (evaluate.rationale_tokens; null: none)"
    )
    written: float | None = column(pa.float32(), "the parsed score (null: unparsable)")
    expected: float | None = column(pa.float32(), "the read-off beside it (diagnostic)")
    distribution: list | None = column(pa.list_(pa.float32()), "the 11-way restricted distribution it was drawn from")
    reward_kind: str | None = column(pa.string(), 'pair | consistency | "" (not rewarded: not trained)')
    reward: float | None = column(pa.float32(), "the evaluator's reward for this judgement (null: not rewarded)")


JUDGEMENT_SPANS_SCHEMA = arrow_schema(JudgementRow)


@dataclass(frozen=True)
class EvidenceRow:
    """evidence.parquet: one claim checked against searched passages (self-evaluate)."""

    round: int = column(pa.int32(), nullable=False)
    query_id: str = column(pa.string(), nullable=False)
    trajectory_id: str = column(pa.string(), nullable=False)
    probe_kind: str | None = column(pa.string(), '"" for the report, else the corrupted copy whose claims were checked')
    deeper: bool | None = column(pa.bool_(), "a re-check of the same claim with more search, not used for scores")
    claim_idx: int | None = column(pa.int32())
    claim: str | None = column(pa.string())
    cited: list | None = column(pa.list_(pa.int32()))
    queries: list | None = column(pa.list_(pa.string()), "the search calls made, one per hop")
    passage_ids: list | None = column(pa.list_(pa.string()), "shown to the evaluator: the cited passages, then found")
    span: dict | None = column(SPAN, "the verdict the evaluator wrote on the claim (trainable; null: nothing to show)")
    written: str | None = column(pa.string(), "its parse: supported | contradicted | not_found (null: unparsable)")
    anchor_claim: str | None = column(pa.string(), "the claim with an entity swapped (null: nothing to swap)")
    anchor_span: dict | None = column(SPAN, "the verdict written on the anchor, against the same passages")
    anchor_written: str | None = column(pa.string())
    reward: float | None = column(pa.float32(), "the pair's anchor credit (unparsable: reward.unparsable_judgement)")
    anchor_reward: float | None = column(pa.float32())
    p_yes: float | None = column(pa.float32(), "the read-off: answer probabilities after contextual calibration")
    p_no: float | None = column(pa.float32())
    p_unclear: float | None = column(pa.float32())
    verdict: str | None = column(pa.string(), "the one the round uses (evaluate.verdict_source)")
    separation: float | None = column(
        pa.float32(), "calibrated P(yes) of the claim less that of its anchor (null: none)"
    )
    followup_query: str | None = column(pa.string(), "a re-check's own search query, which the evaluator wrote ...")
    followup_span: dict | None = column(SPAN, "... as a trainable span")
    followup_reward: float | None = column(pa.float32(), "the change of the claim's separation over its first check")


EVIDENCE_SCHEMA = arrow_schema(EvidenceRow)


@dataclass(frozen=True)
class CitationRow:
    """citations.parquet: one cited claim checked against the passages it cites (self-evaluate)."""

    round: int = column(pa.int32(), nullable=False)
    query_id: str = column(pa.string(), nullable=False)
    trajectory_id: str = column(pa.string(), nullable=False)
    claim_idx: int | None = column(pa.int32())
    claim: str | None = column(pa.string(), "a sentence of the report that cites")
    cited: list | None = column(pa.list_(pa.int32()))
    passage_ids: list | None = column(pa.list_(pa.string()), "the passages it cites, all it is checked against")
    span: dict | None = column(
        SPAN, "the verdict the evaluator wrote (trainable with its anchor, as evidence verdicts)"
    )
    written: str | None = column(pa.string())
    anchor_claim: str | None = column(pa.string())
    anchor_span: dict | None = column(SPAN)
    anchor_written: str | None = column(pa.string())
    reward: float | None = column(pa.float32())
    anchor_reward: float | None = column(pa.float32())
    p_yes: float | None = column(pa.float32())
    p_no: float | None = column(pa.float32())
    p_unclear: float | None = column(pa.float32())
    verdict: str | None = column(pa.string(), "supported counts toward the report's citation precision")
    separation: float | None = column(pa.float32())


CITATIONS_SCHEMA = arrow_schema(CitationRow)


@dataclass(frozen=True)
class ProbeRow:
    """probes.parquet: one corrupted copy of a report (self-evaluate)."""

    round: int = column(pa.int32(), nullable=False)
    query_id: str = column(pa.string(), nullable=False)
    trajectory_id: str = column(pa.string(), nullable=False)
    kind: str | None = column(pa.string())
    changed: bool | None = column(pa.bool_(), "false when the report had nothing to damage (not scored)")
    text: str | None = column(pa.string())


PROBES_SCHEMA = arrow_schema(ProbeRow)


@dataclass(frozen=True)
class SolverRewardRow:
    """solver_rewards.parquet: one report's reward (self-evaluate)."""

    round: int = column(pa.int32(), nullable=False)
    query_id: str = column(pa.string(), nullable=False)
    trajectory_id: str = column(pa.string(), nullable=False)
    validity: float | None = column(pa.float32())
    citation_precision: float | None = column(
        pa.float32(), "cited claims supported by their cited passages (null: none)"
    )
    score: float | None = column(pa.float32(), "mean rubric score over rubrics and passes, in [0, 1]")
    reward: float | None = column(pa.float32(), "validity * score")
    group_mean: float | None = column(pa.float32())
    group_std: float | None = column(pa.float32())


SOLVER_REWARDS_SCHEMA = arrow_schema(SolverRewardRow)


@dataclass(frozen=True)
class EvaluatorRewardRow:
    """evaluator_rewards.parquet: one rubric's reward (self-evaluate)."""

    round: int = column(pa.int32(), nullable=False)
    query_id: str = column(pa.string(), nullable=False)
    rubric_idx: int = column(pa.int32(), nullable=False)
    status: str | None = column(pa.string(), "ok | repaired | failed: a failed rubric earns reward.failed_rubric")
    agreement: float | None = column(pa.float32(), "mean consistency reward of the judgements on its criteria")
    detection: float | None = column(pa.float32(), "its weighted score: share of (probed report, pass) above the copy")
    probe_pairs: int | None = column(pa.int32(), "the copies' pair-credited judgements on its criteria")
    reward: float | None = column(pa.float32(), "score.rewards.rubric_reward (failed: reward.failed_rubric)")


EVALUATOR_REWARDS_SCHEMA = arrow_schema(EvaluatorRewardRow)


@dataclass(frozen=True)
class DimensionStatsRow:
    """dimension_stats.parquet: one dimension's statistics in the round (self-evaluate)."""

    round: int = column(pa.int32(), nullable=False)
    dimension: str = column(pa.string(), nullable=False)
    status: str | None = column(pa.string(), "active | candidate, in the harness the round ran under")
    mean: float | None = column(pa.float32(), "over the reports' own scores (not corrupted copies)")
    mean_low: float | None = column(pa.float32(), "its one-sided lower bound (harness.rules.confidence)")
    reports: int | None = column(pa.int32(), "distinct reports scored on it")
    spread: float | None = column(pa.float32(), "mean over queries of the within-query std over the K reports")
    queries: int | None = column(pa.int32(), "distinct queries with two or more reports scored on it")
    probed: bool | None = column(pa.bool_(), "some corruption damages it (evaluate.probe_dimensions)")
    detected: float | None = column(pa.float32(), "probed reports whose original outscored the copy (ties half) ...")
    probes: int | None = column(pa.int32(), "... of this many distinct probed reports")
    detection: float | None = column(pa.float32(), "detected / probes (0.5 with none)")
    detection_low: float | None = column(pa.float32(), "its Wilson interval (harness.rules.confidence, one-sided)")
    detection_high: float | None = column(pa.float32())
    max_corr: float | None = column(pa.float32(), "the highest within-query correlation with another dimension ...")
    max_corr_with: str | None = column(pa.string(), "... with this one")
    partners: list | None = column(
        pa.list_(pa.struct([("dimension", pa.string()), ("corr", pa.float32()), ("n", pa.int32())])),
        "the within-query correlation with every other dimension scored, over pairs - queries",
    )


DIMENSION_STATS_SCHEMA = arrow_schema(DimensionStatsRow)


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
    flat_at_zero: float = column(
        pa.float32(), "share of queries flat at zero (mean reward <= 0.05): nothing passed the gate", default=0.0,
        label="saturation at zero (flat, mean <= 0.05)",
    )  # fmt: skip
    flat_at_top: float = column(
        pa.float32(), "share of queries flat near the top (mean >= rules.crowded_reward): the judge is saturated",
        default=0.0, label="saturation at the top (flat, mean >= crowded_reward)",
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
    detection: float | None = column(
        pa.float32(), "distinct probed reports scored below their original (mapped dimensions); null: none probed",
        default=None, label="corruption detection, distinct probed reports (chance 50%)",
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


@dataclass(frozen=True)
class HarnessRow:
    """harness.parquet: one dimension of the evolved harness (harness-evolve)."""

    version: int = column(pa.int32(), nullable=False)
    id: str = column(pa.string(), nullable=False)
    description: str | None = column(pa.string())
    origin: str | None = column(pa.string(), "seed | proposed")
    status: str | None = column(pa.string(), "candidate | active | retired")
    uses_evidence: bool | None = column(pa.bool_())
    changed_round: int | None = column(pa.int32())
    saturated_rounds: int | None = column(pa.int32())
    probation_rounds: int | None = column(pa.int32())
    probe_n: int | None = column(pa.int32(), "probed reports gathered since the status last changed ...")
    probe_points: float | None = column(pa.float32(), "... of which detected (ties half)")


HARNESS_SCHEMA = arrow_schema(HarnessRow)


@dataclass(frozen=True)
class ControlsRow:
    """controls.parquet: the evolved harness's controls, one row (harness-evolve)."""

    version: int = column(pa.int32(), nullable=False)
    search_depth: int | None = column(pa.int32())
    search_hops: int | None = column(pa.int32())
    criteria_per_dimension: int | None = column(pa.int32())
    strictness: int | None = column(pa.int32())


CONTROLS_SCHEMA = arrow_schema(ControlsRow)


@dataclass(frozen=True)
class DecisionRow:
    """decisions.parquet: one decision a rule took (harness-evolve)."""

    round: int = column(pa.int32(), nullable=False)
    rule: str | None = column(pa.string())
    target: str | None = column(pa.string())
    action: str | None = column(pa.string())
    numbers: str | None = column(pa.string(), "JSON of the statistics the rule read")
    reason: str | None = column(pa.string())


DECISIONS_SCHEMA = arrow_schema(DecisionRow)


@dataclass(frozen=True)
class TrainSampleRow:
    """samples.parquet: one span trained on, with its reward and advantage (train)."""

    round: int = column(pa.int32(), nullable=False)
    role: str = column(pa.string(), "solver | evaluator", nullable=False)
    query_id: str = column(pa.string(), nullable=False)
    source_id: str | None = column(
        pa.string(), 'trajectory_id (solver), "rubric-<j>", or trajectory/copy/pass/dimension'
    )
    span: str | None = column(pa.string(), "plan | report | rubric | judgement")
    prefix: str | None = column(pa.string(), "masked, shared by sibling spans and encoded once by the trainer")
    prompt: str | None = column(pa.string(), "masked: prompts, search results and quoted evidence carry no loss")
    token_ids: list | None = column(pa.list_(pa.int32()), "what the model wrote (and a trajectory's tool outputs)")
    logprobs: list | None = column(pa.list_(pa.float32()), "at sampling time: the importance ratios' denominators")
    mask: list | None = column(pa.list_(pa.int8()), "1: written, with loss; 0: a tool's output (null: all written)")
    choices: list | None = column(pa.list_(pa.list_(pa.int32())), "per token: its answer set (null: the vocabulary)")
    temperature: float | None = column(pa.float32(), "they are of softmax(logits / temperature): the trainer's too")
    reward: float | None = column(pa.float32())
    advantage: float | None = column(pa.float32(), "normalised within its group (see score.stages.train)")


TRAIN_SAMPLES_SCHEMA = arrow_schema(TrainSampleRow)


@dataclass(frozen=True)
class TrainStepRow:
    """steps.parquet: one optimizer step (train)."""

    round: int = column(pa.int32(), nullable=False)
    step: int = column(pa.int32(), "global optimizer step over the campaign", nullable=False)
    epoch: int | None = column(pa.int32())
    samples: int | None = column(pa.int32())
    tokens: int | None = column(pa.int32(), "trainable (written) tokens")
    padded_tokens: int | None = column(pa.int32(), "tokens the forwards processed, prompts and padding included")
    loss: float | None = column(pa.float32())
    pg: float | None = column(pa.float32())
    kl: float | None = column(pa.float32(), "mean k3 per trainable token")
    clip_frac: float | None = column(pa.float32())
    ratio_mean: float | None = column(pa.float32())
    grad_norm: float | None = column(pa.float32())
    lr: float | None = column(pa.float32())
    seconds: float | None = column(pa.float32())
    evaluator_share: float | None = column(pa.float32(), "the evaluator's share of the step's update, by weight")
    evaluator_token_share: float | None = column(pa.float32(), "and of its trainable tokens, by count")
    sampler_gap_mean: float | None = column(pa.float32(), "mean |trainer - sampler| log-prob per token, at round start")
    sampler_gap_max: float | None = column(pa.float32(), "its maximum (NaN: unknown in this step)")
    sampler_gap_tokens: int | None = column(pa.int32(), "the written tokens it is over")


TRAIN_STEPS_SCHEMA = arrow_schema(TrainStepRow)


# ---- benchmark evaluation (score eval): {run}/benchmark/{checkpoint}/ -----------------------------------
@dataclass(frozen=True)
class BenchmarkJudgementRow:
    """judgements.parquet: one criterion of one task in one judge run (score eval)."""

    task_id: str = column(pa.string(), nullable=False)
    run_idx: int = column(pa.int32(), "judge run; run i puts the target first when i is even", nullable=False)
    seed: int | None = column(pa.int64())
    target_first: bool | None = column(pa.bool_())
    dimension: str | None = column(pa.string())
    criterion: str | None = column(pa.string())
    weight: float | None = column(pa.float64())
    target: float | None = column(pa.float64(), "the run's 0-10 score of the checkpoint's report")
    reference: float | None = column(pa.float64(), "and of the reference report")
    target_expected: float | None = column(
        pa.float64(), "local judges: the mean of the score distribution (null for endpoints)"
    )
    reference_expected: float | None = column(pa.float64())


JUDGEMENTS_SCHEMA = arrow_schema(BenchmarkJudgementRow)


@dataclass(frozen=True)
class TaskScoreRow:
    """task_scores.parquet: one task's score in one judge run (score eval)."""

    task_id: str = column(pa.string(), nullable=False)
    run_idx: int = column(pa.int32(), nullable=False)
    dimension: str | None = column(pa.string(), 'one of the task\'s dimensions, or "overall"')
    target: float | None = column(pa.float64(), "S_tgt (0-10)")
    reference: float | None = column(pa.float64(), "S_ref")
    score: float | None = column(pa.float64(), "S_tgt / (S_tgt + S_ref); 0.5: as good as the reference")


TASK_SCORES_SCHEMA = arrow_schema(TaskScoreRow)


@dataclass(frozen=True)
class TaskSpreadRow:
    """task_spread.parquet: one task's score over the judge runs (score eval)."""

    task_id: str = column(pa.string(), nullable=False)
    dimension: str | None = column(pa.string())
    mean: float | None = column(pa.float64(), "over judge runs")
    std: float | None = column(pa.float64(), "population standard deviation over judge runs")
    min: float | None = column(pa.float64(), "the lowest over judge runs")
    max: float | None = column(pa.float64(), "the highest over judge runs")
    runs: int | None = column(pa.int32(), "judge runs")


TASK_SPREAD_SCHEMA = arrow_schema(TaskSpreadRow)


@dataclass(frozen=True)
class BenchmarkRow:
    """benchmark.parquet: one dimension's score over tasks and runs (score eval)."""

    dimension: str = column(pa.string(), nullable=False)
    mean: float | None = column(pa.float64(), "over judge runs")
    std: float | None = column(pa.float64(), "population standard deviation over judge runs")
    min: float | None = column(pa.float64(), "the lowest over judge runs")
    max: float | None = column(pa.float64(), "the highest over judge runs")
    runs: int | None = column(pa.int32(), "judge runs")
    tasks: int | None = column(pa.int32(), "tasks averaged")


BENCHMARK_SCHEMA = arrow_schema(BenchmarkRow)


@dataclass(frozen=True)
class GoldRow:
    """gold.parquet: one trajectory measured against its query's gold (score.gold; measurement only, never a reward).
    Null where the query has no such gold."""

    query_id: str = column(pa.string(), nullable=False)
    trajectory_id: str = column(pa.string(), nullable=False)
    sample_idx: int | None = column(pa.int32())
    tool_calls: int | None = column(pa.int32(), "search and read calls made")
    found_recall: float | None = column(pa.float32(), "share of the gold passages among the sources it met")
    gold_recall: float | None = column(pa.float32(), "share of the gold passages among the sources its report cites")
    gold_precision: float | None = column(pa.float32(), "share of the cited sources that are gold (null: none cited)")
    answer_correct: bool | None = column(pa.bool_(), "the report states the gold answer (null: the query has none)")
    gold_score: float | None = column(pa.float32(), "mean of gold_recall and answer_correct (those that exist)")


GOLD_SCHEMA = arrow_schema(GoldRow)


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
    """One artifact: its file name inside a folder and its row type (a frozen dataclass, `score.store.rows`), from
    which its schema derives. Stage contracts name their inputs and outputs by these constants."""

    file: str
    row: type

    @property
    def schema(self) -> pa.Schema:
        return arrow_schema(self.row)


REPORTS = Artifact("reports.parquet", ReportRow)
RUBRICS = Artifact("rubrics.parquet", RubricRow)
SCORES = Artifact("scores.parquet", ScoreRow)
JUDGEMENT_SPANS = Artifact("judgement_spans.parquet", JudgementRow)
EVIDENCE = Artifact("evidence.parquet", EvidenceRow)
PROBES = Artifact("probes.parquet", ProbeRow)
CITATIONS = Artifact("citations.parquet", CitationRow)
SOLVER_REWARDS = Artifact("solver_rewards.parquet", SolverRewardRow)
EVALUATOR_REWARDS = Artifact("evaluator_rewards.parquet", EvaluatorRewardRow)
DIMENSION_STATS = Artifact("dimension_stats.parquet", DimensionStatsRow)
SUMMARY = Artifact("summary.parquet", SummaryRow)
HARNESS = Artifact("harness.parquet", HarnessRow)
CONTROLS = Artifact("controls.parquet", ControlsRow)
DECISIONS = Artifact("decisions.parquet", DecisionRow)
TRAIN_SAMPLES = Artifact("samples.parquet", TrainSampleRow)
TRAIN_STEPS = Artifact("steps.parquet", TrainStepRow)
JUDGEMENTS = Artifact("judgements.parquet", BenchmarkJudgementRow)
TASK_SCORES = Artifact("task_scores.parquet", TaskScoreRow)
TASK_SPREAD = Artifact("task_spread.parquet", TaskSpreadRow)
BENCHMARK = Artifact("benchmark.parquet", BenchmarkRow)
GOLD = Artifact("gold.parquet", GoldRow)

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
        GOLD,
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
