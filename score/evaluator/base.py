"""What the evaluator's phases share: the `Evaluation` they run in (the workspace, the engine that writes, the
harness in force, the seed and round) and the `Judged` rows they produce."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

from score.evaluator.claims import answer_tokens
from score.harness import Harness
from score.models import Backend
from score.rubrics import Rubric
from score.scale import ScoreTokens, score_tokens
from score.store.schemas import CITATIONS, EVIDENCE, JUDGEMENT_SPANS, PROBES, RUBRICS, SCORES, Artifact
from score.workspace import Workspace


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a set of reports: the workspace (config, search), the weights that write (`backend`), the
    harness in force, the seed every draw derives from, and the round (0 outside a campaign). `outside`: reports
    from outside a round (`score judge`), scored as they are: no probes, no sibling shown, no citation checks."""

    ws: Workspace
    backend: Backend
    harness: Harness
    seed: int
    round_idx: int = 0
    outside: bool = False

    @cached_property
    def score_tokens(self) -> ScoreTokens:
        """The tokens a score is written with (`score.scale.score_tokens`)."""
        return score_tokens(self.backend.tokenize)

    @cached_property
    def answer_tokens(self) -> ScoreTokens:
        """The first tokens of the verdict answers, in VERDICTS order (`score.evaluator.claims.answer_tokens`)."""
        return answer_tokens(self.backend.tokenize)


def group_by_query(reports: list[dict]) -> dict[str, list[dict]]:
    """Reports grouped by query, queries in first-seen order, each group by sample_idx."""
    by_query: dict[str, list[dict]] = defaultdict(list)
    for r in reports:
        by_query[r["query_id"]].append(r)
    for group in by_query.values():
        group.sort(key=lambda r: r["sample_idx"])
    return by_query


@dataclass
class Judged:
    """What the evaluator role made of a set of reports: the rows of the stage's tables, and the parsed rubrics."""

    by_query: dict[str, list[dict]]  # query id -> its reports, by sample_idx
    rubrics: dict[str, list[Rubric]]  # query id -> its J rubrics
    rubric_rows: list[dict]
    evidence_rows: list[dict]
    probe_rows: list[dict]
    score_rows: list[dict]
    judgement_rows: list[dict]  # rewarded (reward_judgements)
    citation_rows: list[dict]  # each report's cited claims against the passages they cite

    def tables(self) -> list[tuple[Artifact, list[dict]]]:
        """The artifacts judging writes (a shard's), with their rows."""
        return [
            (RUBRICS, self.rubric_rows),
            (EVIDENCE, self.evidence_rows),
            (CITATIONS, self.citation_rows),
            (PROBES, self.probe_rows),
            (SCORES, self.score_rows),
            (JUDGEMENT_SPANS, self.judgement_rows),
        ]

    def judgements_by_query(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = defaultdict(list)
        for j in self.judgement_rows:
            out[j["query_id"]].append(j)
        return out
