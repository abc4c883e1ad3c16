"""The optional LLM controller of the meta-harness: a frozen model behind an OpenAI-compatible endpoint reads
the round's statistics and proposes a change: a new evaluation dimension, a retirement, or a control raised one
step. It only proposes: each proposal goes through the same gate as the evaluator's own (score.harness: a new
dimension starts on probation; a retirement or a control change passes only where the statistic its rule reads
points that way), capped per source, so neither source starves the other."""

from __future__ import annotations

from score.harness import LEVERS, Harness, Proposal
from score.models.base import Message
from score.models.openai_client import ChatClient
from score.rubrics import repair_json


def controller_messages(summary: dict, dimension_stats: list[dict], harness: Harness) -> list[Message]:
    lines = "\n".join(
        f"- {d['dimension']} ({d['status']}): mean {d['mean']:.2f}/10, spread {d['spread']:.2f}, detection "
        f"{d['detection']:.2f} over {d['probes']} probed reports, most correlated with {d['max_corr_with'] or '-'} "
        f"({d['max_corr']:.2f})"
        for d in dimension_stats
    )
    controls = ", ".join(f"{k} {getattr(harness.controls, k)}" for k in LEVERS)
    pool = ", ".join(d.id for d in harness.dimensions)
    return [
        Message(
            "system", "You tune how research reports are evaluated, so that the grades keep telling reports apart."
        ),
        Message(
            "user",
            f"Dimensions and how they behaved this round:\n{lines}\n\nControls: {controls}.\nSolver reward mean "
            f"{summary['reward_mean']:.2f}, saturation rate {summary['saturation_rate']:.2f}.\n"
            "Propose one change, as JSON, one of:\n"
            '{"action": "add", "name": "...", "description": "..."} (a new dimension, not one of: ' + pool + ")\n"
            '{"action": "retire", "dimension": "...", "reason": "..."}\n'
            '{"action": "raise", "control": "' + "|".join(LEVERS) + '", "reason": "..."}',
        ),
    ]


def parse_proposal(text: str) -> Proposal | None:
    """A proposal from one answer, or None when it names none.

    >>> parse_proposal('{"action": "retire", "dimension": "insight", "reason": "flat"}')
    Proposal(kind='retire', target='insight', description='flat', source='llm controller')
    >>> parse_proposal('{"name": "Source Diversity", "description": "uses varied sources"}').kind
    'dimension'
    >>> parse_proposal('{"action": "raise", "control": "temperature"}') is None
    True
    """
    obj, _ = repair_json(text)
    if not obj:
        return None
    action = obj.get("action", "add")
    text_of = {"add": ("name", "description"), "retire": ("dimension", "reason"), "raise": ("control", "reason")}
    if action not in text_of:
        return None
    target, why = (obj.get(k) for k in text_of[action])
    if not isinstance(target, str) or not target.strip() or (action == "raise" and target.strip() not in LEVERS):
        return None
    kind = {"add": "dimension", "retire": "retire", "raise": "control"}[action]
    return Proposal(kind, target.strip(), why.strip() if isinstance(why, str) else "", "llm controller")


def propose(
    client: ChatClient, summary: dict, dimension_stats: list[dict], harness: Harness, n: int, seed: int
) -> tuple[list[Proposal], list[str]]:
    """(the proposals parsed, the raw answers). Unparsable answers propose nothing."""
    answers = client.chat(
        controller_messages(summary, dimension_stats, harness), n=n, temperature=0.8, max_tokens=120, seed=seed
    )
    return [p for p in map(parse_proposal, answers) if p is not None], answers
