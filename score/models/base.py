"""One interface for every model engine: batched sampling with log-probs, and scoring given continuations.

The shape follows what vLLM offers natively (n samples per prompt, a LoRA adapter per request, sampled
token log-probs, prompt log-probs), so the `transformers` backend and a `vllm` backend are interchangeable
behind it. Prompts are rendered strings: `render()` applies the model's chat template once, and the exact
string is stored in the artifacts, so the trainer re-scores precisely what the model saw.

Log-probs are always of the model's own distribution at temperature 1 (before temperature and top-p),
which is what the trainer recomputes; the sampling distribution itself is reproducible from the params.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol


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

    def sample(self, prompts: Sequence[str], params: SamplingParams, desc: str = "") -> list[list[Sample]]:
        """For each prompt, `params.n` samples (outer list: prompts, inner: samples)."""

    def next_token_logprobs(
        self, prefix: str, suffixes: Sequence[str], candidates: Sequence[int], then: int | None = None
    ) -> list[list[float]] | tuple[list[list[float]], list[list[float]]]:
        """Log-probs of `candidates` as the next token after `prefix + suffix`, per suffix (the prefix encoded once);
        with `then`, also one token later, after `then` (how "10" is told from "1")."""

    def choice_logprobs(self, prompts: Sequence[str], candidates: Sequence[int]) -> list[list[float]]:
        """Log-probs of `candidates` as the next token after each prompt."""
