"""Reward functions: pure, a batch in and floats out, each with a tiny doctest.

Scores are on the evaluator's 0-10 scale; rewards are in [0, 1].
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence


def validity(
    report: str,
    finish_reason: str,
    n_cited: int,
    *,
    min_chars: int = 80,
    empty: float = 0.0,
    truncated: float = 0.0,
    uncited: float = 0.0,
    precision: float | None = None,
) -> float:
    """The multiplier that gates a report's reward: 1 for a complete, cited report; the configured factor otherwise.
    With `precision` (the share of its checked cited claims supported by the passages they cite), a citing report's
    multiplier is scaled by it: citing is not enough, the citations must hold.

    Parameters: the report's facts, then the `reward.*` factors as keywords, so the function stays pure of the config.

    >>> validity("x" * 100, "stop", 2)
    1.0
    >>> validity("x" * 100, "length", 2), validity("x" * 100, "stop", 0), validity("short", "stop", 1)
    (0.0, 0.0, 0.0)
    >>> validity("x" * 100, "length", 0, truncated=0.5, uncited=0.5)
    0.25
    >>> validity("x" * 100, "stop", 2, precision=0.5), validity("x" * 100, "stop", 0, uncited=0.5, precision=0.0)
    (0.5, 0.5)
    """
    v = 1.0
    if len(report.strip()) < min_chars:
        v *= empty
    if finish_reason == "length":
        v *= truncated
    if n_cited == 0:
        v *= uncited
    elif precision is not None:
        v *= precision
    return v


def rubric_score(weights: Sequence[float], scores: Sequence[float]) -> float:
    """`sum_k w_k * s_k / 10`: one rubric's weighted score of one report, in [0, 1].

    >>> rubric_score([0.5, 0.5], [10, 6])
    0.8
    """
    return sum(w * s for w, s in zip(weights, scores)) / 10.0


def solver_rewards(validities: Sequence[float], rubric_scores: Sequence[Sequence[float]]) -> list[float]:
    """Per report: `validity * mean over (rubric, pass) of the rubric score`.

    `rubric_scores[i]` holds report i's rubric scores, one per (rubric, pass).

    >>> solver_rewards([1.0, 0.0], [[0.8, 0.6], [0.9, 0.9]])
    [0.7, 0.0]
    """
    return [v * (sum(s) / len(s) if s else 0.0) for v, s in zip(validities, rubric_scores)]


def ranks(xs: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their average rank.

    >>> ranks([3.0, 1.0, 3.0])
    [2.5, 1.0, 2.5]
    """
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def consistency(column: Sequence[float | None], others: Sequence[Sequence[float | None]], tau: float) -> float:
    """One judgement column's consistency reward: the column holds one criterion's scores of the K reports in
    one pass (None: unparsable), `others[k]` report k's scores on that criterion in the other passes. The reward
    is the Spearman correlation of the column with the leave-one-out consensus (mean of the other passes),
    clipped at 0, behind a discrimination floor: a column whose scores spread less than `tau` score points (std)
    earns 0, since constant or near-constant judging is perfectly "consistent" and must earn nothing. Reports
    without a parsed score on either side are left out; fewer than two left earn 0.

    >>> consistency([2, 5, 8], [[3], [5], [9]], tau=1.0)  # same ranking, spread 2.45 >= tau
    1.0
    >>> consistency([7, 7, 7], [[7], [7], [7]], tau=1.0)  # constant: no reward
    0.0
    >>> consistency([6, 6, 7], [[5], [6], [7]], tau=1.0)  # right order, but a spread of 0.47 points
    0.0
    >>> consistency([8, 5, 2], [[3], [5], [9]], tau=1.0)  # reversed
    0.0
    >>> consistency([2, None, 8], [[3], [5], [None]], tau=1.0)  # one pair left
    0.0
    """
    pairs = []
    for score, rest in zip(column, others):
        parsed = [x for x in rest if x is not None]
        if score is not None and parsed:
            pairs.append((float(score), sum(parsed) / len(parsed)))
    if len(pairs) < 2:
        return 0.0
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    if _std(a) < tau:
        return 0.0
    return max(0.0, _corr(ranks(a), ranks(b)))


SUPPORT = {"contradicted": 0, "not_found": 1, "supported": 2}  # how much support a verdict grants a claim


def anchor_credit(claim: str | None, anchor: str | None) -> float | None:
    """Credit of a verdict pair, earned by both verdicts: a claim and its anchor (the same claim with an entity
    swapped, checked against the same passages, so it should get less support). 1 when the anchor got less
    support than the claim, 0.5 on a tie (a judge that answers the same to everything earns 0.5 on every pair:
    a flat group, nothing to train), 0 more; None when either verdict is unparsable (the unparsable one earns
    `reward.unparsable_judgement`).

    >>> anchor_credit("supported", "contradicted"), anchor_credit("not_found", "not_found")
    (1.0, 0.5)
    >>> anchor_credit("not_found", "supported"), anchor_credit("supported", None)
    (0.0, None)
    """
    if claim is None or anchor is None:
        return None
    a, b = SUPPORT[claim], SUPPORT[anchor]
    return 1.0 if b < a else 0.5 if b == a else 0.0


def pair_credit(written: int, other: Sequence[float], above: bool) -> float:
    """Two-sided, noise-free credit of one side of a pair that should be told apart (an original and its damaged
    copy on a damaged dimension; a claim and its anchor): `written` is the outcome this side's judgement wrote (a
    0-10 score, a support level), `other[k]` the probability that the other side's judgement writes outcome k
    (its restricted distribution, already read off). The side that should come out higher (`above`) earns
    P(other below) - P(other above), its partner the mirror: an expectation over the partner's distribution, so
    no draw of the partner's adds noise, and both sides are trained. In [-1, 1]; ties earn 0, so a judge that
    scores a pair alike earns nothing on it, exactly when the partner is certain and in expectation otherwise.

    >>> pair_credit(7, [0.0] * 4 + [1.0] + [0.0] * 6, above=True)  # the original's 7 against a copy sure of a 4
    1.0
    >>> pair_credit(4, [0.0] * 7 + [0.5, 0.5] + [0.0] * 2, above=False)  # the copy's 4 against an original of 7-8
    1.0
    >>> pair_credit(5, [0.0] * 5 + [1.0] + [0.0] * 5, above=True)  # alike: nothing
    0.0
    >>> pair_credit(2, [0.25, 0.25, 0.5], above=True)  # a claim "supported" (2) against an anchor's support levels
    0.5
    """
    below = sum(other[:written])
    over = sum(other[written + 1 :])
    return below - over if above else over - below


def consistency_gated(agreement: float, null: float, detection: float | None) -> float:
    """A judgement column's consistency reward as trained: its agreement with the other passes
    (`consistency`) less `null` (what independent passes of this judge reach by chance: reward.consistency_null),
    clipped at 0, times the column's mean pair credit on the query's probed pairs clipped at 0 (`detection`):
    a stable surface feature (length, citation count) pays nothing unless the same column also ranks originals
    above their damaged copies. No probed pair in the column (None): nothing.

    >>> round(consistency_gated(0.8, 0.2, 0.5), 6), consistency_gated(0.8, 0.2, 0.0), consistency_gated(0.1, 0.2, 1.0)
    (0.3, 0.0, 0.0)
    >>> consistency_gated(0.8, 0.2, None)
    0.0
    """
    if detection is None:
        return 0.0
    return max(0.0, agreement - null) * max(0.0, detection)


def rubric_reward(
    status: str, pairs: Sequence[tuple[float, float]], consistency_rewards: Sequence[float], failed: float
) -> float:
    """A rubric earns by what its weights do: over the query's probed reports and passes, `pairs` hold its
    weighted score of the original and of the damaged copy; the reward is the mean of +1 (original above), 0 (tie),
    -1 (copy above). With no probed report, the mean consistency reward of the judgements on its criteria. A
    rubric that failed to parse earns `failed` (below -1, so below any parsed rubric). J identical rubrics earn
    alike: a flat group, counted in the round's `identical_rubric_queries`.

    >>> rubric_reward("ok", [(0.8, 0.5), (0.6, 0.6), (0.4, 0.7)], [], -2.0)
    0.0
    >>> rubric_reward("ok", [(0.8, 0.5)], [0.2], -2.0), rubric_reward("ok", [], [0.2, 0.4], -2.0)
    (1.0, 0.30000000000000004)
    >>> rubric_reward("failed", [(0.8, 0.5)], [], -2.0)
    -2.0
    """
    if status == "failed":
        return failed
    if pairs:
        return sum((o > c) - (o < c) for o, c in pairs) / len(pairs)
    return sum(consistency_rewards) / len(consistency_rewards) if consistency_rewards else 0.0


def detection_rate(pairs: Sequence[tuple[float, float]]) -> float:
    """Share of (original, corrupted) pairs ranked the right way; ties count half; 0.5 (chance) with no pairs.

    >>> detection_rate([(6, 2), (3, 3), (1, 4)])
    0.5
    """
    return detection_share(detection_points(pairs), len(pairs))


def detection_points(pairs: Sequence[tuple[float, float]]) -> float:
    """1 per pair ranked the right way, 0.5 per tie: halves, so sums of points are exact in any order.

    >>> detection_points([(6, 2), (3, 3)])
    1.5
    """
    return sum(1.0 if o > c else 0.5 if o == c else 0.0 for o, c in pairs)


def detection_share(points: float, n: int) -> float:
    """Detection rate from counted points over `n` pairs; 0.5 (chance) with none."""
    return points / n if n else 0.5


def group_std(xs: Sequence[float]) -> float:
    """Population std of one query's rewards: near zero means a saturated group (no GRPO signal).

    >>> group_std([0.5, 0.5, 0.5])
    0.0
    """
    return _std(xs)


def _std(xs: Sequence[float]) -> float:
    if not xs:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def _corr(a: Sequence[float], b: Sequence[float]) -> float:
    sa, sb = _std(a), _std(b)
    if sa == 0 or sb == 0:
        return 0.0
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    r = sum((x - ma) * (y - mb) for x, y in zip(a, b)) / (len(a) * sa * sb)
    return max(-1.0, min(1.0, r))  # float round-off can step past 1


def correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Pearson correlation; 0 when either side is constant.

    >>> round(correlation([1, 2, 3], [2, 4, 6.5]), 3)
    0.998
    """
    return _corr(a, b)


def structure_reward(report: str, n_cited: int, n_sources: int) -> float:
    """A simple, known reward for sanity checks of the trainer (benchmarks/learning_check.py), no judge
    involved: half for citing distinct sources (up to 3, or all there are), half for markdown section
    headings (up to 2).

    >>> structure_reward("# T\\n## A\\ntext [1]\\n## B\\nmore [2]", n_cited=2, n_sources=5)
    0.8333333333333333
    >>> structure_reward("plain text", n_cited=0, n_sources=5)
    0.0
    """
    headings = sum(1 for line in report.splitlines() if line.lstrip().startswith("#"))
    cites = min(n_cited, 3) / max(min(3, n_sources), 1)
    return 0.5 * cites + 0.5 * min(headings, 2) / 2


_WORD = re.compile(r"[A-Za-z][A-Za-z-]{3,}")


def cited_overlaps(report: str, sources: Sequence[dict]) -> list[float]:
    """For each of the report's sentences that cites, the share of its content words (4+ letters) found in the
    passages it cites (`sources`: rows with n and text); a cited number with no source contributes no text.

    >>> src = [{"n": 1, "text": "Wind turbines turn wind energy into electricity."}]
    >>> cited_overlaps("Turbines turn wind into electricity [1]. Opera is music and theatre [1]. Plain.", src)
    [1.0, 0.0]
    """
    text = {s["n"]: s["text"].lower() for s in sources}
    overlaps = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", report):
        cited = [int(n) for n in re.findall(r"\[(\d{1,3})\]", sentence)]
        words = {w.lower() for w in _WORD.findall(sentence)}
        if cited and words:
            passages = " ".join(text.get(n, "") for n in cited)
            overlaps.append(sum(w in passages for w in words) / len(words))
    return overlaps


SUPPORTED_OVERLAP = 0.5  # a cited sentence counts as supported when half its content words are in what it cites


def lexical_precision(report: str, sources: Sequence[dict]) -> float | None:
    """A judge-free citation precision for sanity checks: the share of the report's cited sentences with at least
    half of their content words in a passage they cite (`cited_overlaps`). None when no sentence cites.

    >>> src = [{"n": 1, "text": "Wind turbines turn wind energy into electricity."}]
    >>> lexical_precision("Turbines turn wind into electricity [1]. Opera is music and theatre [1].", src)
    0.5
    """
    overlaps = cited_overlaps(report, sources)
    return sum(o >= SUPPORTED_OVERLAP for o in overlaps) / len(overlaps) if overlaps else None


def graded_precision(report: str, sources: Sequence[dict]) -> float:
    """`lexical_precision` with partial credit below the bar: each cited sentence earns its overlap over the bar,
    capped at 1 (a supported sentence earns 1, one with a quarter of its words in its passage 0.5); 0 when no
    sentence cites. The bar's own credit is unchanged, so a policy that maximises this maximises the precision.

    >>> src = [{"n": 1, "text": "Wind turbines turn wind energy into electricity."}]
    >>> graded_precision("Turbines turn wind into electricity [1]. Opera is music, theatre and wind [1].", src)
    0.75
    """
    overlaps = cited_overlaps(report, sources)
    return sum(min(1.0, o / SUPPORTED_OVERLAP) for o in overlaps) / len(overlaps) if overlaps else 0.0


def research_reward(report: str, finish_reason: str, sources: Sequence[dict], precision_weight: float = 0.75) -> float:
    """A simple, known reward for the react agent (benchmarks/learning_check.py), no judge involved: 0 for a
    trajectory cut before it answered; otherwise `1 - precision_weight` for answering within the turn's budget (a
    truncated answer earns half of that) plus `precision_weight` times `graded_precision` (0 when nothing is
    cited). What the learning check measured with each form is in docs/measurements-archive.md: on queries the corpus
    cannot answer no form taught citing; precision alone (no credit for answering) left groups flat for want of a
    trajectory that cites.

    >>> src = [{"n": 1, "text": "Wind turbines turn wind energy into electricity."}]
    >>> research_reward("Turbines turn wind into electricity [1].", "stop", src), research_reward("", "cut", src)
    (1.0, 0.0)
    >>> research_reward("Turbines turn wind into electricity.", "stop", src)
    0.25
    """
    if finish_reason == "cut":
        return 0.0
    answered = 1.0 if finish_reason == "stop" else 0.5
    return (1 - precision_weight) * answered + precision_weight * graded_precision(report, sources)
