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

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from score.scale import ScoreTokens, restricted_draw

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
    choices: list[list[int]] | None = None  # per token: the answer set it was drawn from (None: the vocabulary)


@dataclass
class WrittenScore:
    """One answer (a score, a verdict) as the evaluator wrote it after `prefix + suffix`, and the read-off beside
    it. Every token is drawn from the distribution restricted to its answer set (`choices`), so an answer is
    always one of the set: nothing unparsable can be written."""

    token_ids: list[int]  # what was written: the answer's first token, and one more after the `then` token
    logprobs: list[float]  # of each written token, under the restricted distribution at the sampling temperature
    first: list[float]  # the candidates' temperature-1 log-probs at the first token (the read-off)
    after_then: list[float] | None  # and after `then` was written, when `then` is given
    second: list[float] | None = None  # after `then`: the temperature-1 log-probs of ("0", close)
    choices: list[list[int]] | None = None  # per written token, the answer set it was drawn from


def written_score(
    answers: ScoreTokens,
    first: list[float],
    after_then: list[float] | None,
    second: list[float] | None,
    temperature: float,
    rng: random.Random,
) -> WrittenScore:
    """The answer drawn from the read-off's log-probs (every backend's `write_scores`): the first token from the
    candidates, and after `then` one of ("0", close), each from the restricted distribution at `temperature`.

    >>> import math
    >>> t = ScoreTokens((10, 11, 12), None)
    >>> w = written_score(t, [math.log(0.1), math.log(0.1), math.log(0.8)], None, None, 1.0, random.Random(0))
    >>> w.token_ids, round(math.exp(w.logprobs[0]), 3), w.choices
    ([12], 0.8, [[10, 11, 12]])
    """
    i, lp = restricted_draw(first, temperature, rng.random())
    ids, lps, choices = [answers.candidates[i]], [lp], [list(answers.candidates)]
    pair = answers.second()
    if pair is not None and ids[0] == answers.then and second is not None:
        k, lp2 = restricted_draw(second, temperature, rng.random())
        ids, lps, choices = ids + [pair[k]], lps + [lp2], choices + [list(pair)]
    return WrittenScore(ids, lps, first, after_then, second, choices)


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
        self, prefix: str, suffixes: Sequence[str], answers: ScoreTokens, params: SamplingParams
    ) -> list[WrittenScore]:
        """Per suffix, an answer written after `prefix + suffix` (the prefix encoded once): the first token drawn at
        `params.temperature` from the distribution restricted to `answers.candidates`, one more from ("0", close)
        when the first is `then` (`written_score`); and the candidates' read-off log-probs."""

    def choice_logprobs(self, prompts: Sequence[str], candidates: Sequence[int]) -> list[list[float]]:
        """Log-probs of `candidates` as the next token after each prompt."""


def free_memory() -> None:
    """Hand memory back after an engine or a trainer is dropped: a garbage collection (reference cycles keep models
    alive), then, on a GPU, the caching allocator's unused blocks back to the device, so the next engine's start-up
    check sees them free. Imports nothing: torch only if already loaded."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


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
