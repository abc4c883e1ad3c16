"""The optional LLM controller of the meta-harness: a frozen model behind an OpenAI-compatible endpoint
reads the round's statistics and proposes new evaluation dimensions. It only proposes: the rules of
`score.harness.evolve` still decide, so a proposal becomes a candidate on probation, never an active
dimension directly."""

from __future__ import annotations

from score.models.base import Message
from score.models.openai_client import ChatClient
from score.rubrics import repair_json


def controller_messages(summary: dict, dimension_stats: list[dict], pool: list[str]) -> list[Message]:
    lines = "\n".join(
        f"- {d['dimension']} ({d['status']}): mean {d['mean']:.2f}/10, spread {d['spread']:.2f}, detection "
        f"{d['detection']:.2f}"
        for d in dimension_stats
    )
    return [
        Message("system", "You design evaluation dimensions for grading research reports."),
        Message(
            "user",
            f"Current dimensions and how they behaved this round:\n{lines}\n\nSolver reward mean "
            f"{summary['reward_mean']:.2f}, "
            f"saturation rate {summary['saturation_rate']:.2f}.\nPropose one new dimension that would separate good "
            f"reports from better ones and is not one of: {', '.join(pool)}.\n"
            f'Answer as JSON: {{"name": "...", "description": "..."}}',
        ),
    ]


def propose(
    client: ChatClient, summary: dict, dimension_stats: list[dict], pool: list[str], n: int, seed: int
) -> tuple[list[tuple[str, str]], list[str]]:
    """(proposals as (name, description), the raw answers). Unparsable answers propose nothing."""
    answers = client.chat(
        controller_messages(summary, dimension_stats, pool), n=n, temperature=0.8, max_tokens=120, seed=seed
    )
    proposals = []
    for text in answers:
        obj, _ = repair_json(text)
        if obj and isinstance(obj.get("name"), str) and isinstance(obj.get("description"), str):
            proposals.append((obj["name"].strip(), obj["description"].strip()))
    return proposals, answers
