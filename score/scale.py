"""The 0-10 score scale, read off a model's next-token probabilities (the evaluator's scores and the local
benchmark judge's): which tokens are the digits, how "10" is told from "1", the expected score and the
distribution a sampled score is drawn from, and the strictness curve."""

from __future__ import annotations

import numpy as np


def digit_ids(tokenize) -> list[int]:
    """The token ids of "0".."9" under `tokenize` (a backend's)."""
    return [tokenize(str(d))[0] for d in range(10)]


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


def strict_curve(score: float, strictness: int) -> float:
    """Stricter harnesses make the top harder to reach: `10 * (s/10) ** (1 + strictness/2)`.

    >>> strict_curve(8.0, 0), round(strict_curve(8.0, 2), 2)
    (8.0, 6.4)
    """
    return 10.0 * (score / 10.0) ** (1.0 + 0.5 * strictness)
