"""The solver's tool loop (score.agent): what the model writes becomes calls, outputs and counted errors, never a
crash; a trajectory is one sequence whose tool outputs carry no loss, and the trainer's first step on real
multi-turn trajectories has ratio 1."""

from __future__ import annotations

import math

import pytest
import torch

from score.agent import Budget, agent_messages, run_agents
from score.models.base import Sample, SamplingParams
from score.search.base import Passage
from score.search.searxng import SearchError
from score.trainer import step_totals
from tests.conftest import ToyBackend

BUDGET = Budget(
    max_tool_calls=3,
    turn_tokens=400,
    call_tokens=400,
    max_context_tokens=100_000,
    passages_per_search=2,
    max_sources=3,
    passage_chars=60,
    read_chars=200,
)


class Scripted(ToyBackend):
    """Writes the given turns in order, the same for every trajectory; a turn of None ends by the length budget."""

    def __init__(self, turns):
        super().__init__()
        self.turns = list(turns)
        self.calls = 0
        self.budgets = []  # each turn's token budget

    def sample(self, prompts, params, desc="", prefix=""):
        text = self.turns[min(self.calls, len(self.turns) - 1)]
        self.calls += 1
        self.budgets.append(params.max_tokens)
        reason = "length" if text is None or text.endswith("...") else "stop"
        ids = self.tokenize(text or "x" * 5)
        return [[Sample(self.decode(ids), ids, [-0.5] * len(ids), reason)] for _ in prompts]


class Library:
    """Three passages; `down` makes every search fail as a dead service does."""

    def __init__(self, down: bool = False):
        self.down = down
        self.fingerprint = "toy"
        self.passages = [Passage(f"p{i}", f"Title {i}", f"Text {i} " * 40, f"https://x/{i}", 1.0) for i in (1, 2, 3)]

    def search(self, query, k):
        if self.down:
            raise SearchError("search service http://127.0.0.1:9 unreachable or too slow (refused)")
        return [] if query == "nothing" else self.passages[:k]


def run(turns, library=None, budget=BUDGET):
    backend = Scripted(turns)
    [[t]] = run_agents(backend, library or Library(), ["a query"], budget, SamplingParams(n=1, temperature=1.0, seed=0))
    return t, backend


def test_search_read_answer_is_one_sequence_with_tool_outputs_masked():
    t, backend = run(["wind</search>", "<read>2</read>", "<answer># R\n\nA [1]. B [2].</answer>"])
    assert [turn.tool for turn in t.turns] == ["search", "read", "answer"] and t.finish == "stop"
    assert t.report == "# R\n\nA [1]. B [2]." and t.tool_calls == 2
    assert [n for n, _ in t.numbered()] == [1, 2] and t.turns[1].passage_ids == ["p2"]
    text = backend.decode(t.ids)
    written = "".join(ch for ch, m in zip(text, t.mask) if m)
    tools = "".join(ch for ch, m in zip(text, t.mask) if not m)
    assert written == "wind</search><read>2</read><answer># R\n\nA [1]. B [2].</answer>"
    assert tools.startswith("<search>\n<results>\n[1] Title 1: Text 1") and '<passage n="2">' in tools
    assert all(lp == 0.0 for lp, m in zip(t.logprobs, t.mask) if not m)
    assert all(lp == -0.5 for lp, m in zip(t.logprobs, t.mask) if m)


@pytest.mark.parametrize(
    "turns, tool, error, seen",
    [
        (["wind</search>", "<read>7</read>"], "read", "no_source", "there is no source [7]; sources: 1-2"),
        (["<read>1</read>"], "read", "no_source", "sources: none yet: search first"),
        (["</search>"], "error", "malformed", "empty search"),
        (["nothing</search>"], "search", "no_results", "no results"),
        (["wind</search>", "<browse>x.com</browse>"], "error", "unknown_tool", "unknown tool <browse>"),
        (["wind</search>", "<read>1 and so on..."], "error", "malformed", "<read> was not closed"),
    ],
)
def test_a_bad_call_is_a_tool_output_the_model_reads(turns, tool, error, seen):
    t, _ = run([*turns, "<answer>done [1]</answer>"])
    bad = next(turn for turn in t.turns if turn.error)
    assert (bad.tool, bad.error) == (tool, error) and seen in bad.output
    assert t.turns[-1].tool == "answer" and t.finish == "stop"  # the trajectory went on and answered


def test_a_search_service_that_is_down_is_a_tool_output_and_the_loop_ends():
    t, _ = run(["wind</search>", "<answer>no sources</answer>"], Library(down=True))
    assert t.turns[0].error == "search_failed" and "search failed: search service" in t.turns[0].output
    assert t.finish == "stop" and t.sources == {}


def test_the_first_turn_is_a_search_call_with_its_own_budget_and_every_output_says_what_is_left():
    budget = Budget(**{**vars(BUDGET), "call_tokens": 16})
    t, backend = run(["a long query that never closes...", "wind</search>", "<answer>A [1].</answer>"], budget=budget)
    assert backend.budgets == [16, 400, 400] and t.turns[0].error == "malformed"
    assert "2 tool calls left" in t.turns[0].output and "1 tool call left" in t.turns[1].output
    assert all("like [1], in <answer></answer>" in turn.output for turn in t.turns[:2])
    prompt = agent_messages("How do offshore wind farms affect local fisheries?", 3)[1].content
    assert "<search>offshore wind farms affect</search> searches the library" in prompt  # copied, still a search


def test_budgets_cut_a_trajectory_that_never_answers():
    t, _ = run(["wind</search>", "<read>1</read>", "<read>2</read>", "<read>1</read>"])
    assert t.tool_calls == 3 and t.finish == "cut" and not t.answered and t.report == ""
    assert "No tool calls left" in t.turns[2].output and t.turns[-1].error == "over_budget"
    t, _ = run(["wind</search>", *["<read>1 and..."] * 5])  # calls left open count, and end it too
    assert [turn.error for turn in t.turns] == ["", "malformed", "malformed", "over_budget"] and t.finish == "cut"
    small = Budget(**{**vars(BUDGET), "max_context_tokens": 600, "turn_tokens": 100})
    t, _ = run(["wind</search>"] * 5, budget=small)  # the toy spells a token per character: results are long
    assert t.finish == "cut" and t.turns[-1].argument == "context"
    assert len(t.prompt_ids) + len(t.ids) <= 600


def test_a_turn_without_a_call_is_the_report_and_a_length_cut_answer_is_truncated():
    t, _ = run(["wind</search>", "# Report\n\nIt is windy [1]."])
    assert t.turns[-1].tool == "end" and t.report == "# Report\n\nIt is windy [1]." and t.finish == "stop"
    t, _ = run(["wind</search>", "<answer># Report\n\nIt is windy [1] and..."])
    assert t.finish == "length" and t.answered and t.report.startswith("# Report")


# ---- the real model: sampled trajectories, trained in one forward each ----------------------------------------


@pytest.fixture(scope="module")
def real_trajectories(tiny_model, tmp_path_factory):
    from score.models.embedded import cache_root
    from score.search.bm25 import BM25Search
    from score.search.corpus import ensure_wiki_corpus

    search = BM25Search(ensure_wiki_corpus(cache_root()), cache_root())
    budget = Budget(2, 24, 24, 1024, 2, 4, 120, 240)
    params = SamplingParams(n=4, temperature=0.8, seed=3)
    groups = run_agents(tiny_model, search, ["How do wind turbines make electricity?"], budget, params)
    multi = [t for t in groups[0] if 0 in t.mask[t.mask.index(1) :]]  # a tool output after a written turn
    assert multi, [[turn.tool for turn in t.turns] for t in groups[0]]
    return groups[0]


def test_first_step_on_real_multi_turn_trajectories_has_ratio_one_and_no_loss_on_tool_outputs(real_trajectories):
    from score.config import ModelConfig, TrainConfig
    from score.models import resolve_model_path
    from score.trainer import Trainer, TrainSample

    model_cfg = ModelConfig(threads=2)
    trainer = Trainer(
        model_cfg, TrainConfig(lr=1e-3, kl_coef=0.05, lora_rank=8), resolve_model_path(model_cfg), None, 0
    )
    prefix = trainer.tokenizer(real_trajectories[0].prompt, add_special_tokens=False)["input_ids"]
    assert prefix == real_trajectories[0].prompt_ids  # what the trainer encodes is what the sampler continued

    def samples(tool_logprob: float) -> list[TrainSample]:
        return [
            TrainSample(
                "solver",
                [],
                t.ids,
                [lp if m else tool_logprob for lp, m in zip(t.logprobs, t.mask)],
                advantage=(-1.0) ** k,
                temperature=0.8,
                prefix_ids=prefix,
                mask=t.mask,
            )
            for k, t in enumerate(real_trajectories)
        ]

    grads = []
    for tool_logprob in (0.0, -30.0):  # what is stored for tool tokens cannot move the update
        trainer.optimizer.zero_grad(set_to_none=True)
        totals = step_totals()
        batch = samples(tool_logprob)
        rows = [batch]  # the K trajectories share their prompt: one packed row, one forward
        trainer._micro_batch(rows, [1.0 / sum(s.written for s in batch)] * len(batch), True, totals)
        assert totals["tokens"] == sum(sum(t.mask) for t in real_trajectories)  # only written tokens count
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], atol=0, rtol=0)
    log = trainer._step(samples(0.0), {"solver": 1.0}, epoch=0, total_steps=4)
    assert log.ratio_mean == pytest.approx(1.0, abs=1e-3) and log.clip_frac == 0.0 and math.isfinite(log.loss)
    assert log.tokens == sum(sum(t.mask) for t in real_trajectories)
