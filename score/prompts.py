"""Every prompt the model sees, in one file, with the parsers for what it writes back."""

from __future__ import annotations

import re

from score.models.base import Message
from score.search.base import Passage

SOLVER_SYSTEM = "You are a research assistant who plans searches and writes reports that cite their sources."


def plan_messages(query: str, subquestions: int) -> list[Message]:
    return [
        Message("system", SOLVER_SYSTEM),
        Message(
            "user",
            f"Research query: {query}\n\nList {subquestions} short search queries that would help answer it, "
            f"one per line, numbered.",
        ),
    ]


def report_messages(query: str, sources: list[tuple[int, Passage]], passage_chars: int) -> list[Message]:
    listing = "\n".join(f"[{n}] {p.title}: {p.text[:passage_chars]}" for n, p in sources)
    return [
        Message("system", SOLVER_SYSTEM),
        Message(
            "user",
            f"Research query: {query}\n\nSources:\n{listing}\n\nWrite a brief markdown report (about 120 words) that "
            f"answers the query: a # title, two ## sections, and inline citations like [1] or [2] after each claim "
            f"they support.",
        ),
    ]


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

EVALUATOR_SYSTEM = "You are an expert evaluator of research reports. You write grading rubrics and score reports against them."
RUBRIC_PREFILL = '{"weights": {'  # the evaluator's answer starts here: steers a small model into the format

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


def scoring_parts(
    render, query: str, report: str, positions: list[int], total: int, evidence: str, criteria: list[tuple[str, str]], strictness: int
) -> tuple[str, list[list[str]]]:
    """The shared prefix (query, report, evidence) and, per pass, one suffix per (dimension, criterion), each
    ending where the score digit comes. A pass differs by where the report stood in its order (`positions`);
    the prefix is the same for every criterion of both passes, so the backend encodes the report once."""
    head = f"Research query: {query}\n\nReport:\n{report}\n\nEvidence checks:\n{evidence}\n\n"
    marker = "\u241e"  # a character no report contains: where the per-criterion part starts
    strict = STRICTNESS[min(strictness, len(STRICTNESS) - 1)]
    prefix, per_pass = "", []
    for position in positions:
        suffixes = []
        for dim, criterion in criteria:
            ask = (
                f"{marker}This is report {position} of {total} on this query.\nDimension: {dim}\nCriterion: {criterion}\n"
                f"Rate how well the report meets the criterion from 0 (not at all) to 10 (fully).{strict}"
            )
            full = render([Message("system", EVALUATOR_SYSTEM), Message("user", head + ask)]) + "Score: "
            cut = full.index(marker)
            prefix = full[:cut]
            suffixes.append(full[cut + 1 :])
        per_pass.append(suffixes)
    return prefix, per_pass


def evidence_messages(claim: str, passages: list[tuple[str, str]]) -> list[Message]:
    listing = "\n".join(f"Passage ({title}): {text}" for title, text in passages)
    return [
        Message("system", "You check claims against evidence."),
        Message("user", f"{listing}\n\nClaim: {claim}\n\nDoes the evidence support the claim? Answer Yes, No, or Unclear."),
    ]
