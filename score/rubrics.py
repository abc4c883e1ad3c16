"""Rubrics the evaluator writes: robust parsing of a small model's JSON, with every repair counted.

A rubric covers the harness's active dimensions. The model's weights are used where it wrote valid ones
(renormalised to sum to 1), its criteria where it wrote usable ones; the rest falls back to documented
defaults (uniform weights; a criterion built from the dimension's description and the query). Nothing here
raises on bad model output: `parse_rubric` always returns a rubric and says how much of it was repaired.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

import json_repair

ParseStatus = Literal["ok", "repaired", "failed"]


@dataclass
class Rubric:
    weights: dict[str, float]  # active dimension -> weight, summing to 1
    criteria: dict[str, list[str]]  # dimension -> criteria (active and candidate dimensions)
    proposal: tuple[str, str] | None  # (name, description) of a proposed new dimension
    status: ParseStatus  # ok: used as written; repaired: JSON or fields mended; failed: nothing usable, all defaults
    repairs: list[str] = field(default_factory=list)


def repair_json(text: str) -> tuple[dict | None, bool]:
    """Parse the first JSON object in `text`, mending what a truncated or sloppy writer leaves (json-repair:
    unclosed strings and brackets, trailing commas, single quotes, missing commas).

    Returns (object or None, whether it needed mending).

    >>> repair_json('{"a": 1}')
    ({'a': 1}, False)
    >>> repair_json('noise {"a": [1, 2,], "b": {"c": "x')
    ({'a': [1, 2], 'b': {'c': 'x'}}, True)
    >>> repair_json("{'a': 0.5,}")
    ({'a': 0.5}, True)
    >>> repair_json("no object")
    (None, False)
    """
    start = text.find("{")
    if start < 0:
        return None, False
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
        return (obj, False) if isinstance(obj, dict) else (None, False)
    except json.JSONDecodeError:
        pass
    obj = json_repair.repair_json(text[start:], return_objects=True)
    return (obj, True) if isinstance(obj, dict) and obj else (None, False)


_WEIGHTS = re.compile(r'"weights"\s*:\s*\{([^{}]*)')
_PAIR = re.compile(r'"([A-Za-z_ ]+)"\s*:\s*([0-9]*\.?[0-9]+)')
_CRITERIA = re.compile(r'"([A-Za-z_ ]+)"\s*:\s*\[\s*"([^"]{10,})"')
_PROPOSAL = re.compile(r'"new_dimension"\s*:\s*\{\s*"name"\s*:\s*"([^"]+)"\s*,\s*"description"\s*:\s*"([^"]+)"')


def salvage(text: str) -> dict:
    """Pull weights, criteria and a proposal out of text that is not JSON as a whole.

    >>> salvage('{"weights": {"a": 0.7, "b": 0.3 "c" }, "criteria": {"a": ["Names the vendors clearly" "x"]')
    {'weights': {'a': 0.7, 'b': 0.3}, 'criteria': {'a': ['Names the vendors clearly']}}
    """
    out: dict = {}
    w = _WEIGHTS.search(text)
    if w:
        out["weights"] = {k.strip(): float(v) for k, v in _PAIR.findall(w.group(1))}
    crit_part = text[text.find('"criteria"') :] if '"criteria"' in text else ""
    criteria = {k.strip(): [v] for k, v in _CRITERIA.findall(crit_part)}
    if criteria:
        out["criteria"] = criteria
    p = _PROPOSAL.search(text)
    if p:
        out["new_dimension"] = {"name": p.group(1), "description": p.group(2)}
    return out


def default_criterion(dimension: str, description: str, query: str) -> str:
    """The criterion of a dimension where the evaluator wrote no usable one, and what the model is then prompted
    with: whole sentences, whatever form the description takes (a verb phrase, a noun phrase or a clause).

    >>> default_criterion("citation_support", "claims cite sources, and the sources support them.", "Why?")
    "For the query 'Why?', the report is strong in citation support. The standard: claims cite sources, and the \
sources support them."
    """
    standard = description.strip().rstrip(".")
    return (
        f"For the query '{query[:120]}', the report is strong in {dimension.replace('_', ' ')}. "
        f"The standard: {standard}."
    )


def parse_rubric(
    text: str, active: list[tuple[str, str]], candidates: list[tuple[str, str]], query: str, criteria_per_dimension: int
) -> Rubric:
    """Turn the evaluator's text into a usable rubric over `active` (and shadow `candidates`) dimensions.

    >>> r = parse_rubric('{"weights": {"a": 3, "b": 1}, "criteria": {"a": ["Names the three main vendors."]}',
    ...                  [("a", "covers it"), ("b", "reads well")], [], "q?", 1)
    >>> r.weights, r.criteria["a"], r.status
    ({'a': 0.75, 'b': 0.25}, ['Names the three main vendors.'], 'repaired')
    >>> parse_rubric("garbage", [("a", "covers it")], [], "q?", 1).status
    'failed'
    """
    obj, mended = repair_json(text)
    repairs = ["json"] if mended else []
    names = [n for n, _ in active]
    if obj is None:  # not mendable as a whole: salvage the fields one by one
        obj = salvage(text)
        repairs.append("salvaged" if obj else "json")
    raw_w = obj.get("weights") if isinstance(obj.get("weights"), dict) else {}
    weights = {n: float(w) for n, w in raw_w.items() if n in names and isinstance(w, (int, float)) and 0 <= w < 1e6}
    if sum(weights.values()) <= 0:
        weights, usable_w = {n: 1.0 for n in names}, False
        repairs.append("weights")
    else:
        usable_w = True
        if set(weights) != set(names):
            repairs.append("weights_missing")
    total = sum(weights.values())
    weights = {n: weights.get(n, 0.0) / total for n in names}
    raw_c = obj.get("criteria") if isinstance(obj.get("criteria"), dict) else {}
    criteria: dict[str, list[str]] = {}
    usable_c = 0
    for name, description in [*active, *candidates]:
        given = raw_c.get(name) if name in names else None
        given = [given] if isinstance(given, str) else given if isinstance(given, list) else []
        good = [c.strip() for c in given if isinstance(c, str) and len(c.strip()) >= 10][:criteria_per_dimension]
        usable_c += bool(good) and name in names
        if not good and name in names:
            repairs.append(f"criteria:{name}")
        criteria[name] = good or [default_criterion(name, description, query)]
    prop = obj.get("new_dimension")
    proposal = None
    if isinstance(prop, dict) and isinstance(prop.get("name"), str) and isinstance(prop.get("description"), str):
        proposal = (prop["name"].strip(), prop["description"].strip())
    status: ParseStatus = "ok" if not repairs else "failed" if not (usable_w or usable_c) else "repaired"
    return Rubric(weights, criteria, proposal, status, repairs)
