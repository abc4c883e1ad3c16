"""One interface for every model engine: batched sampling with log-probs, and scoring given continuations.

The shape follows what vLLM offers natively (n samples per prompt, a LoRA adapter per request, sampled
token log-probs, prompt log-probs), so the `transformers` backend and a `vllm` backend are interchangeable
behind it. Prompts are rendered strings: `render()` applies the model's chat template once, and the exact
string is stored in the artifacts, so the trainer re-scores precisely what the model saw.

Log-probs are those of the distribution a token was sampled from: the model's, at the sampling temperature
(`log_softmax(logits / temperature)`); the trainer recomputes exactly that, so a span meant for training is
sampled with top_p 1 (a nucleus would truncate the distribution its log-probs describe). Greedy decoding
(temperature 0) records temperature-1 log-probs and is never trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Prompt = str | Sequence[int]  # a rendered prompt, or token ids to continue as they are


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1  # samples per prompt
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()  # generation ends after the first stop string; the stop string is kept
    seed: int = 0


@dataclass
class Sample:
    text: str
    token_ids: list[int]
    logprobs: list[float]  # one per token in token_ids
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int = 0


@dataclass
class WrittenScore:
    """One judgement's score as the evaluator wrote it after `prefix + suffix`, and the read-off beside it."""

    token_ids: list[int]  # what was written: the score's first token, and one more after the `then` token
    logprobs: list[float]  # of each written token, at the sampling temperature
    first: list[float]  # the candidates' temperature-1 log-probs at the first token (the read-off)
    after_then: list[float] | None  # and after `then` was written, when `then` is given


@dataclass
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass
class Usage:
    """Token counters a backend keeps, for benchmarks and stage logs."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    calls: int = 0
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    """What the library calls on a model engine: exactly this (`transformers`, `vllm` and the tests' toy).
    Both engines also offer `score()` (teacher-forced log-probs), which only their parity tests use."""

    name: str
    checkpoint: str  # what weights sample: "base" or a checkpoint address, recorded in the artifacts
    usage: Usage

    def render(self, messages: Sequence[Message], continue_final: bool = False) -> str:
        """Chat-template `messages` into the exact prompt string (generation prompt appended)."""

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens."""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids, end-of-sequence tokens left out."""

    def sample(
        self, prompts: Sequence[Prompt], params: SamplingParams, desc: str = "", prefix: str | Sequence[str] = ""
    ) -> list[list[Sample]]:
        """For each prompt, `params.n` samples (outer list: prompts, inner: samples). With `prefix` (one for all
        prompts, or one per prompt), each prompt is `prefix + prompt` with the two tokenized apart, as the trainer
        tokenizes a span stored with a prefix. A prompt given as token ids is continued exactly (the solver's tool
        loop: what the model wrote and the tools' outputs, never re-tokenized)."""

    def next_token_logprobs(
        self, prefix: str, suffixes: Sequence[str], candidates: Sequence[int], then: int | None = None
    ) -> list[list[float]] | tuple[list[list[float]], list[list[float]]]:
        """Log-probs of `candidates` as the next token after `prefix + suffix`, per suffix (the prefix encoded once);
        with `then`, also one token later, after `then` (how "10" is told from "1")."""

    def write_scores(
        self, prefix: str, suffixes: Sequence[str], candidates: Sequence[int], then: int | None, params: SamplingParams
    ) -> list[WrittenScore]:
        """Per suffix, a score written after `prefix + suffix` (the prefix encoded once): the first token sampled at
        `params.temperature` from the whole vocabulary (a non-score token is written as it comes, and the parse
        calls it unparsable), one more token when the first is `then`; and the candidates' read-off log-probs."""

    def choice_logprobs(self, prompts: Sequence[str], candidates: Sequence[int]) -> list[list[float]]:
        """Log-probs of `candidates` as the next token after each prompt."""


def prefixes_of(prefix: str | Sequence[str], n: int) -> list[str]:
    """One prefix per prompt from `sample`'s `prefix` argument (one for all, or one each).

    >>> prefixes_of("head", 2), prefixes_of(["a", "b"], 2)
    (['head', 'head'], ['a', 'b'])
    """
    if isinstance(prefix, str):
        return [prefix] * n
    if len(prefix) != n:
        raise ValueError(f"{len(prefix)} prefixes for {n} prompts: give one prefix, or one per prompt")
    return list(prefix)
