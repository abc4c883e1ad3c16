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
