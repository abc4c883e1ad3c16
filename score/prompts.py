"""Every prompt the model sees, in one file, with the parsers for what it writes back."""

from __future__ import annotations

import re
from dataclasses import dataclass

from score.models.base import Message
from score.search.base import Passage

SOLVER_SYSTEM = "You are a research assistant who plans searches and writes reports that cite their sources."


def plan_parts(render, query: str, subquestions: int) -> tuple[str, str]:
    """The plan prompt as (prefix, suffix): the prefix (system and query) is the one every plan and report of the
    query starts with, so the trainer encodes it once for all of them (`report_parts`)."""
    ask = f"List {subquestions} short search queries that would help answer it, one per line, numbered."
    return split_prompt(render, SOLVER_SYSTEM, _solver_head(query), ask, "")


def report_parts(render, query: str, sources: list[tuple[int, Passage]], passage_chars: int) -> tuple[str, str]:
    """The report prompt as (prefix, suffix), the prefix `plan_parts`'s; the suffix holds the numbered sources."""
    listing = "\n".join(f"[{n}] {p.title}: {p.text[:passage_chars]}" for n, p in sources)
    ask = (
        f"Sources:\n{listing}\n\nWrite a brief markdown report (about 120 words) that answers the query: a # title, "
        "two ## sections, and inline citations like [1] or [2] after each claim they support."
    )
    return split_prompt(render, SOLVER_SYSTEM, _solver_head(query), ask, "")


def _solver_head(query: str) -> str:
    return f"Research query: {query}\n\n"


_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*(.+?)\s*$")


def parse_plan(text: str, limit: int) -> list[str]:
    """Sub-questions from a plan: numbered or bulleted lines, cut at a colon, deduplicated, at most `limit`.

    >>> parse_plan("Here:\\n1. TikTok ban effects: a long note\\n2) investor risk\\n- investor risk", 3)
    ['TikTok ban effects', 'investor risk']
    >>> parse_plan("no list at all", 3)
    []
    """
    out: list[str] = []
    for line in text.splitlines():
        m = _ITEM.match(line)
        if not m:
            continue
        item = m.group(1).split(":", 1)[0].strip(" *\"'")  # "topic: explanation" -> the topic is the search
        item = " ".join(item.split()[:16])
        if len(item) >= 3 and item.lower() not in (o.lower() for o in out):
            out.append(item)
        if len(out) == limit:
            break
    return out


_CITE = re.compile(r"\[(\d{1,3})\]")


def cited_sources(report: str, n_sources: int) -> list[int]:
    """Distinct valid source numbers a report cites, in order of first use.

    >>> cited_sources("A [2]. B [1][2]. C [9].", n_sources=3)
    [2, 1]
    """
    seen: list[int] = []
    for m in _CITE.finditer(report):
        n = int(m.group(1))
        if 1 <= n <= n_sources and n not in seen:
            seen.append(n)
    return seen


# ---- evaluator role ------------------------------------------------------------------------------------

EVALUATOR_SYSTEM = (
    "You are an expert evaluator of research reports. You write grading rubrics and score reports against them."
)
RUBRIC_PREFILL = '{"weights": {'  # the evaluator's answer starts here: steers a small model into the format

SCORE_AFTER_RATIONALE = "\nScore: "  # appended to what the evaluator reasoned, where its score comes

STRICTNESS = [
    "",
    " Be strict: a score above 7 needs clear evidence in the report.",
    " Be very strict: reserve scores above 6 for reports that fully meet the criterion with cited evidence.",
    " Be severe: most reports deserve 5 or less; give 8 or more only to an exemplary report.",
]


def rubric_messages(query: str, dimensions: list[tuple[str, str]], criteria_per_dimension: int) -> list[Message]:
    listing = "\n".join(f"- {name}: {description}" for name, description in dimensions)
    example = ", ".join(f'"{name}": 0.{i + 1}' for i, (name, _) in enumerate(dimensions[:2]))
    return [
        Message("system", EVALUATOR_SYSTEM),
        Message(
            "user",
            f"Research query: {query}\n\nEvaluation dimensions:\n{listing}\n\n"
            f"Write a grading rubric for reports on this query as JSON. Give every dimension a weight (the weights "
            f"sum to 1) and {criteria_per_dimension} concrete criterion per dimension saying what a strong report on "
            f"this query must contain or avoid. You may propose one new dimension.\n"
            f'Format: {{"weights": {{{example}, ...}}, "criteria": {{"dimension": ["..."]}}, '
            f'"new_dimension": {{"name": "...", "description": "..."}}}}',
        ),
        Message("assistant", RUBRIC_PREFILL),
    ]


MARKER = "\u241e"  # a character no report contains: where the per-criterion part of a judging prompt starts


def split_prompt(render, system: str, head: str, ask: str, tail: str) -> tuple[str, str]:
    """A rendered judging prompt `system / head + ask` + `tail`, cut where `ask` starts: the prefix shared by
    every ask over the same head (encoded once by the backend) and this ask's own suffix."""
    full = render([Message("system", system), Message("user", head + MARKER + ask)]) + tail
    cut = full.index(MARKER)
    return full[:cut], full[cut + 1 :]


@dataclass(frozen=True)
class JudgingView:
    """What one judging pass shows: the query, the judged report, a sibling report for comparison ("" for none),
    and the evidence-check lines."""

    query: str
    report: str
    sibling: str
    evidence: str


def judging_parts(
    render, view: JudgingView, criteria: list[tuple[str, str]], strictness: int, rationale: bool = False
) -> tuple[str, list[str]]:
    """One pass's shared prefix (query, report, a sibling report for comparison, evidence checks) and one suffix
    per (dimension, criterion), each ending where the score comes (with `rationale`, where a short reasoning
    comes, the score after it: `SCORE_AFTER_RATIONALE`). The prefix is the same for every criterion of the pass,
    so the backend (and the trainer) encode the report once per pass; passes differ by the sibling shown and the
    order of the evidence lines."""
    head = f"Research query: {view.query}\n\nReport:\n{view.report}\n\n"
    if view.sibling:
        head += f"For comparison only, another report on the same query (not the one you judge):\n{view.sibling}\n\n"
    head += f"Evidence checks on the judged report:\n{view.evidence}\n\n"
    strict = STRICTNESS[min(strictness, len(STRICTNESS) - 1)]
    prefix, suffixes = "", []
    for dim, criterion in criteria:
        ask = (
            f"Dimension: {dim}\nCriterion: {criterion}\n"
            f"Rate how well the judged report meets the criterion from 0 (not at all) to 10 (fully).{strict}"
        )
        if rationale:
            ask += " Reason briefly, then give the score."
        prefix, suffix = split_prompt(render, EVALUATOR_SYSTEM, head, ask, "Reasoning:" if rationale else "Score: ")
        suffixes.append(suffix)
    return prefix, suffixes


FOLLOWUP_PREFILL = "Search query:"  # the evaluator's follow-up search query starts here


def followup_messages(claim: str, found: list[str]) -> list[Message]:
    """Asking the evaluator for one more search query for a claim, having seen the titles its search found: the
    query it writes is a trained action (score.evaluator.evidence)."""
    titles = "; ".join(found) or "nothing"
    return [
        Message("system", "You search an encyclopedia for evidence to check claims."),
        Message(
            "user",
            f"Claim: {claim}\n\nThe search found: {titles}.\n\nWrite one short search query (a few words) that would "
            "find a passage confirming or refuting the claim.",
        ),
        Message("assistant", FOLLOWUP_PREFILL),
    ]


VERDICT_SYSTEM = "You check claims against evidence."


def verdict_parts(render, passages: list[tuple[str, str]], claims: list[str]) -> tuple[str, list[str]]:
    """The shared prefix (the passages, each as (label, text)) and one suffix per claim, ending where the answer
    (Yes, No or Unclear) comes: a claim and its anchor (the same claim with an entity swapped) share the
    passages, so the backend and the trainer encode them once."""
    head = "\n".join(f"Passage {label}: {text}" for label, text in passages) + "\n\n"
    prefix, suffixes = "", []
    for claim in claims:
        ask = f"Claim: {claim}\n\nDoes the evidence support the claim? Answer Yes, No, or Unclear."
        prefix, suffix = split_prompt(render, VERDICT_SYSTEM, head, ask, "Answer:")
        suffixes.append(suffix)
    return prefix, suffixes


# ---- benchmark judge (RACE-style: two reports side by side, every criterion scored for each) -------------

RACE_SYSTEM = (
    "You are an expert judge of deep research reports. "
    "You compare two reports on the same task, criterion by criterion."
)


def _race_head(task: str, articles: tuple[str, str]) -> str:
    return f"Research task: {task}\n\nArticle 1:\n{articles[0]}\n\nArticle 2:\n{articles[1]}\n\n"


def race_parts(render, task: str, articles: tuple[str, str], criteria: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """The shared prefix (task and both articles) and two suffixes per (dimension, criterion text): Article 1's
    score, then Article 2's, each ending where the score digit comes. The prefix is encoded once per task."""
    prefix, suffixes = "", []
    for dim, criterion in criteria:
        for k in (1, 2):
            ask = (
                f"Dimension: {dim}\nCriterion: {criterion}\n"
                f"Rate how well Article {k} meets the criterion from 0 (not at all) to 10 (fully)."
            )
            prefix, suffix = split_prompt(render, RACE_SYSTEM, _race_head(task, articles), ask, f"Article {k} score: ")
            suffixes.append(suffix)
    return prefix, suffixes


def race_messages(task: str, articles: tuple[str, str], criteria: list[tuple[str, str]]) -> list[Message]:
    """One request scoring both articles on every criterion, for judges that write (endpoints)."""
    listing = "\n".join(f"{i}. ({dim}) {text}" for i, (dim, text) in enumerate(criteria, start=1))
    return [
        Message("system", RACE_SYSTEM),
        Message(
            "user",
            _race_head(task, articles)
            + f"Criteria:\n{listing}\n\nScore both articles on every criterion from 0 (not at all) "
            f"to 10 (fully). Answer with one line per criterion and nothing else, in the form\n"
            f"<criterion number>: <Article 1 score> <Article 2 score>\nfor example\n1: 7 5",
        ),
    ]


_RACE_LINE = re.compile(r"^\s*(\d{1,3})\s*[:.)-]\s*(10|\d)(?:\s*/\s*10)?\s*[,;| ]\s*(10|\d)\b", re.M)


def parse_race_scores(text: str, n_criteria: int) -> dict[int, tuple[int, int]]:
    """Criterion index (0-based) -> (Article 1 score, Article 2 score) from an endpoint judge's answer; the
    first line for a criterion counts, lines for unknown criteria are ignored.

    >>> parse_race_scores("1: 7 5\\n2: 10 3\\n2: 1 1\\n9: 4 4", 3)
    {0: (7, 5), 1: (10, 3)}
    """
    out: dict[int, tuple[int, int]] = {}
    for m in _RACE_LINE.finditer(text):
        i = int(m.group(1)) - 1
        if 0 <= i < n_criteria and i not in out:
            out[i] = (int(m.group(2)), int(m.group(3)))
    return out
