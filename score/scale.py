"""The 0-10 score scale: which tokens write a score under a tokenizer (a digit per token, or "10" as one token),
the read-off of a score from next-token probabilities (the expected score and its 11-way distribution), the
parse of a written score.

Used by the evaluator's judgements (scores it writes, the read-off kept beside them as a diagnostic) and by the
local benchmark judge (the read-off only)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_LEADING_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class ScoreTokens:
    """The tokens a 0-10 score is written with. `candidates[s]` is the token of score s for the scores written as
    one token; when "10" takes two tokens ("1", "0"), candidates are the ten digits and `then` is the token of "1":
    the read-off asks for the next token after "1" to tell 10 from 1, and a written "1" gets one more token."""

    candidates: tuple[int, ...]
    then: int | None
    close: int | None = None  # with `then`: the newline token that ends a written "1", so "1" and "10" are both actions

    def second(self) -> tuple[int, int] | None:
        """The answer set of the token after `then`: "0" (the score is 10) or `close` (the score is 1)."""
        return (self.candidates[0], self.close) if self.then is not None and self.close is not None else None


def score_tokens(tokenize) -> ScoreTokens:
    """The score tokens under `tokenize` (a backend's).

    >>> score_tokens(lambda s: [ord(c) for c in s])  # a digit per token: "10" is "1" then "0"
    ScoreTokens(candidates=(48, 49, 50, 51, 52, 53, 54, 55, 56, 57), then=49, close=10)
    >>> vocab = {str(s): 100 + s for s in range(11)}
    >>> score_tokens(lambda s: [vocab[s]])  # "10" is one token
    ScoreTokens(candidates=(100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110), then=None, close=None)
    """
    digits = []
    for s in range(10):
        ids = tokenize(str(s))
        if len(ids) != 1:
            raise ValueError(f"the tokenizer writes the digit {s} as {len(ids)} tokens; a 0-10 score needs one each")
        digits.append(ids[0])
    ten = tokenize("10")
    if len(ten) == 1:
        return ScoreTokens(tuple(digits + ten), None)
    close = tokenize("\n")
    if len(close) != 1:
        raise ValueError(f"the tokenizer writes a newline as {len(close)} tokens; a written score ends with one")
    return ScoreTokens(tuple(digits), digits[1], close[0])


def restricted_softmax(logprobs: Sequence[float], temperature: float) -> np.ndarray:
    """log_softmax(logprobs / temperature) over an answer set: the restricted distribution's log-probs (any
    normalisation of `logprobs` works: only differences count).

    >>> [round(float(x), 3) for x in np.exp(restricted_softmax([-9.0, -9.0], 1.0))]
    [0.5, 0.5]
    """
    lp = np.asarray(logprobs, dtype=np.float64) / temperature
    return lp - np.logaddexp.reduce(lp)


def restricted_draw(logprobs: Sequence[float], temperature: float, u: float) -> tuple[int, float]:
    """One answer drawn from the distribution restricted to an answer set: `logprobs` are the answers' log-probs
    (any normalisation: only differences count), the draw is from softmax(logprobs / temperature) over them by the
    uniform `u` in [0, 1), and the drawn answer's log-prob under that restricted distribution is returned with its
    index (what the trainer recomputes: `log_softmax(logits[answers] / temperature)`).

    >>> import math
    >>> i, lp = restricted_draw([math.log(0.2), math.log(0.6), math.log(0.2)], 1.0, 0.5)
    >>> i, round(math.exp(lp), 3)
    (1, 0.6)
    >>> i, lp = restricted_draw([-30.0, -30.0], 1.0, 0.75)  # unlikely in the vocabulary, certain in the set
    >>> i, round(math.exp(lp), 3)
    (1, 0.5)
    """
    lp = restricted_softmax(logprobs, temperature)  # (n,)
    cdf = np.cumsum(np.exp(lp))
    i = int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), len(lp) - 1))
    return i, float(lp[i])


def restricted_distribution(
    tokens: ScoreTokens, first: Sequence[float], second: Sequence[float] | None, temperature: float
) -> np.ndarray:
    """The 11-way distribution a written score is drawn from (`Backend.write_scores`): the first token restricted
    to the candidates, and after `then` the second restricted to ("0", close), both at `temperature`; `second`
    holds those two tokens' log-probs after `then` (unused when "10" is one token). What pair credit takes its
    expectations over (`score.rewards.pair_credit`).

    >>> import math
    >>> t = ScoreTokens(tuple(range(10)), 1, 99)
    >>> d = restricted_distribution(t, [math.log(0.5 if s in (1, 7) else 1e-12) for s in range(10)], [0.0, 0.0], 1.0)
    >>> [round(float(d[s]), 3) for s in (1, 7, 10)]
    [0.25, 0.5, 0.25]
    """
    p = np.exp(restricted_softmax(first, temperature))
    if tokens.then is None:
        return p
    q = np.exp(restricted_softmax(second if second is not None else [0.0, 0.0], temperature))  # (2,) "0", close
    dist = np.zeros(11)
    dist[:10] = p
    dist[1], dist[10] = p[1] * q[1], p[1] * q[0]
    return dist


def digit_ids(tokenize) -> list[int]:
    """The token ids of "0".."9" under `tokenize` (the benchmark judge's read-off)."""
    return list(score_tokens(tokenize).candidates[:10])


def read_off(tokens: ScoreTokens, first: list[float], after_then: list[float] | None) -> tuple[float, np.ndarray]:
    """Expected 0-10 score and its 11-way distribution from the candidates' log-probs at the score's first token
    (and, when "10" takes two tokens, after "1").

    >>> import math
    >>> t = ScoreTokens(tuple(range(11)), None)
    >>> e, _ = read_off(t, [math.log(0.5 if s in (2, 10) else 1e-12) for s in range(11)], None)
    >>> round(e, 3)
    6.0
    """
    if tokens.then is None:
        p = np.exp(np.asarray(first, dtype=np.float64))
        total = p.sum()
        dist = p / total if total > 0 else np.full(11, 1 / 11)
        return float((dist * np.arange(11)).sum()), dist
    return expected_score(first, after_then or [float("-inf")] * 10)


def expected_score(first: list[float], after_one: list[float]) -> tuple[float, np.ndarray]:
    """Expected 0-10 score from the digit log-probs, telling "10" from "1" by the next token; and the 11-way
    distribution (renormalised over digits, so mass on non-digit tokens never turns into NaN).

    >>> import math
    >>> first = [math.log(0.5 if d in (1, 7) else 1e-12) for d in range(10)]
    >>> e, dist = expected_score(first, [math.log(0.5)] + [math.log(0.05)] * 9)
    >>> round(e, 3), round(float(dist[10]), 3)
    (6.25, 0.25)
    """
    p = np.exp(np.asarray(first, dtype=np.float64))  # (10,) P(first digit)
    p0_after_1 = float(np.exp(after_one[0]))  # P("0" | "1")
    dist = np.zeros(11)
    dist[:10] = p
    dist[10] = p[1] * p0_after_1
    dist[1] = p[1] * (1.0 - p0_after_1)
    total = dist.sum()
    dist = dist / total if total > 0 else np.full(11, 1 / 11)
    return float((dist * np.arange(11)).sum()), dist


def parse_score(text: str) -> float | None:
    """The score a judgement wrote: the number it starts with, if it lies in 0-10; else None (unparsable).

    >>> parse_score("7"), parse_score(" 10\\n"), parse_score("3.5/10"), parse_score("15"), parse_score("seven")
    (7.0, 10.0, 3.5, None, None)
    """
    m = _LEADING_NUMBER.match(text)
    if not m:
        return None
    value = float(m.group(1))
    return value if 0.0 <= value <= 10.0 else None
