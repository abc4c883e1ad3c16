"""One interface for every model engine: batched sampling with log-probs, and scoring given continuations.

The shape follows what vLLM offers natively (n samples per prompt, a LoRA adapter per request, sampled
token log-probs, prompt log-probs), so the `transformers` backend and a `vllm` backend are interchangeable
behind it. Prompts are rendered strings: `render()` applies the model's chat template once, and the exact
string is stored in the artifacts, so the trainer re-scores precisely what the model saw.

Log-probs are always of the model's own distribution at temperature 1 (before temperature and top-p),
which is what the trainer recomputes; the sampling distribution itself is reproducible from the params.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence


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


class Backend(Protocol):
    name: str
    checkpoint: str  # what weights sampled: "base" or a checkpoint path, recorded in artifacts

    def render(self, messages: Sequence[Message], continue_final: bool = False) -> str:
        """Chat-template `messages` into the exact prompt string (generation prompt appended)."""

    def sample(self, prompts: Sequence[str], params: SamplingParams, desc: str = "") -> list[list[Sample]]:
        """For each prompt, `params.n` samples (outer list: prompts, inner: samples)."""

    def score(self, prompts: Sequence[str], continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        """Log-prob of each supplied continuation token given its prompt (teacher forcing)."""

    def tokenize(self, text: str) -> list[int]: ...


@dataclass
class Usage:
    """Token counters a backend keeps, for benchmarks and stage logs."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    calls: int = 0
    extra: dict = field(default_factory=dict)
