"""Deliberately damaged copies of reports: the evaluator's validity probes, needing no human label.

Each function is deterministic given its seed and returns the damaged text (or the same text when the
report has nothing to damage, which the stage records as a skipped probe).
"""

from __future__ import annotations

import random
import re

_SECTION = re.compile(r"(?m)^#{2,}\s")
_CITE = re.compile(r"\s?\[\d{1,3}\]")
_NUMBER = re.compile(r"\b\d[\d,.]*\b")
_ENTITY = re.compile(r"\b[A-Z][a-z]{2,}(?:\s[A-Z][a-z]{2,})*\b")


def drop_section(text: str, seed: int) -> str:
    """Remove one `##` section (or, with none, the longest paragraph).

    >>> drop_section("# T\\n## A\\nalpha\\n## B\\nbeta", seed=0) in ("# T\\n## B\\nbeta", "# T\\n## A\\nalpha\\n")
    True
    """
    starts = [m.start() for m in _SECTION.finditer(text)]
    if starts:
        i = random.Random(seed).randrange(len(starts))
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        return text[: starts[i]] + text[end:]
    paras = text.split("\n\n")
    if len(paras) < 2:
        return text
    longest = max(range(len(paras)), key=lambda k: len(paras[k]))
    return "\n\n".join(p for k, p in enumerate(paras) if k != longest)


def strip_citations(text: str, seed: int) -> str:
    """Remove every `[n]` citation.

    >>> strip_citations("Solar grows [1]. Wind too [2][3].", seed=0)
    'Solar grows. Wind too.'
    """
    return _CITE.sub("", text)


def shuffle_paragraphs(text: str, seed: int) -> str:
    """Shuffle the paragraphs after the first (the title stays), so the argument loses its order.

    >>> shuffle_paragraphs("# T\\n\\na\\n\\nb\\n\\nc", seed=1).startswith("# T")
    True
    """
    paras = text.split("\n\n")
    if len(paras) < 3:
        return text
    head, body = paras[:1], paras[1:]
    rng = random.Random(seed)
    for _ in range(5):  # a shuffle that leaves the order as it was is not a corruption
        shuffled = body[:]
        rng.shuffle(shuffled)
        if shuffled != body:
            return "\n\n".join(head + shuffled)
    return "\n\n".join(head + body[::-1])


def swap_entity(text: str, seed: int) -> str:
    """Replace a number with a wrong one, or, with no number, swap two different capitalised names (a word that
    starts a sentence is not taken for a name: swapping "The" would be a tell of grammar, not of facts). Citation
    markers (`[n]`) are never touched: renumbering one changes no claim, and an evaluator that never sees the
    sources could not tell.

    >>> swap_entity("Revenue rose 12% in 2021.", seed=0) != "Revenue rose 12% in 2021."
    True
    >>> swap_entity("Prices in Germany rose [1] and in Spain fell [2].", seed=3)
    'Prices in Spain rose [1] and in Germany fell [2].'
    >>> swap_entity("Solar grows [1]. Wind grows [2].", seed=3)
    'Solar grows [1]. Wind grows [2].'
    """
    rng = random.Random(seed)
    numbers = [m for m in _NUMBER.finditer(text) if not _in_marker(text, m.start(), m.end())]
    if numbers:
        m = rng.choice(numbers)
        digits = re.sub(r"\D", "", m.group()) or "1"
        wrong = str(int(digits) * rng.choice([3, 7]) + rng.randint(1, 9))
        return text[: m.start()] + wrong + text[m.end() :]
    names = list(dict.fromkeys(m.group() for m in _ENTITY.finditer(text) if not _starts_sentence(text, m.start())))
    if len(names) < 2:
        return text
    a, b = rng.sample(names, 2)
    return text.replace(a, "\0").replace(b, a).replace("\0", b)


def _starts_sentence(text: str, start: int) -> bool:
    """Whether the word at `start` is the first of a sentence, a line or a heading."""
    before = text[:start].rstrip(" #")
    return not before or before[-1] in ".!?\n"


def _in_marker(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is the number of a `[n]` citation marker."""
    return text[start - 1 : start] == "[" and text[end : end + 1] == "]"


CORRUPTIONS = {
    "drop_section": drop_section,
    "strip_citations": strip_citations,
    "shuffle_paragraphs": shuffle_paragraphs,
    "swap_entity": swap_entity,
}
