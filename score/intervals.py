"""Confidence intervals for the few-count statistics the meta-harness and the reports read.

Every rule of the meta-harness fires on an interval, never on a point estimate: with a handful of probed
reports or queries a round, a point estimate crosses any threshold by chance (benchmarks/harness_power.py
measures how often). One-sided bounds use `z` = 1.645 (95% one-sided) by default; `mean_interval` uses
Student's t, so two seeds give an honest (wide) interval.
"""

from __future__ import annotations

import math
from statistics import NormalDist

Z_ONE_SIDED = NormalDist().inv_cdf(0.95)  # 1.645: a one-sided 95% bound
Z_TWO_SIDED = NormalDist().inv_cdf(0.975)  # 1.960: a two-sided 95% interval
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)  # df 1..10


def wilson(successes: float, n: int, z: float = Z_ONE_SIDED) -> tuple[float, float]:
    """Wilson score interval of a proportion (ties may count half); (0, 1) with no trials.

    >>> [round(x, 3) for x in wilson(8, 10)]
    [0.541, 0.931]
    >>> wilson(0, 0)
    (0.0, 1.0)
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def t_quantile(df: int) -> float:
    """The two-sided 95% quantile of Student's t (a table to 10 degrees of freedom, then Cornish-Fisher).

    >>> t_quantile(1), round(t_quantile(30), 3)
    (12.706, 2.042)
    """
    if df <= 0:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z_TWO_SIDED
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df)


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided 95% t interval of a mean; a single value has an infinite interval.

    >>> [round(x, 2) for x in mean_interval([1.0, 2.0, 3.0])]
    [2.0, -0.48, 4.48]
    """
    n = len(values)
    if n == 0:
        return 0.0, -math.inf, math.inf
    mean = sum(values) / n
    if n == 1:
        return mean, -math.inf, math.inf
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def correlation_interval(r: float, n_eff: int, z: float = Z_ONE_SIDED) -> tuple[float, float]:
    """Fisher-z interval of a correlation over `n_eff` independent pairs; (-1, 1) below 4.

    >>> [round(x, 3) for x in correlation_interval(0.9, 20)]
    [0.791, 0.954]
    """
    if n_eff < 4:
        return -1.0, 1.0
    zr = math.atanh(max(-0.999999, min(0.999999, r)))
    half = z / math.sqrt(n_eff - 3)
    return math.tanh(zr - half), math.tanh(zr + half)
