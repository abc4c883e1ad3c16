"""Gold measures (score.gold): written beside every round and every checkpoint, and never read by a reward."""

import json

import pytest

from score.gold import evaluate_heldout, measure
from score.pipeline import STAGES
from score.queries import Query
from score.runner import run_stage
from score.store.layout import heldout_dir
from score.store.schemas import GOLD, SCHEMAS
from score.workspace import Workspace

REWARDED = ("self-evaluate", "harness-evolve", "train")  # the stages whose outputs shape a reward or an update


def test_a_trajectory_is_measured_on_what_it_met_cited_and_answered():
    row = {
        "query_id": "q",
        "trajectory_id": "t",
        "sample_idx": 0,
        "tool_calls": 2,
        "report": "Wind power output doubled in 2021 [2].",
        "cited": [2],
        "sources": [{"n": 1, "passage_id": "p1"}, {"n": 2, "passage_id": "p2"}, {"n": 3, "passage_id": "p9"}],
    }
    m = measure(row, Query("q", "?", ("p2", "p3"), "2021"))
    assert (m["found_recall"], m["gold_recall"], m["gold_precision"], m["answer_correct"]) == (0.5, 0.5, 1.0, True)
    assert m["gold_score"] == 0.75
    none = measure({**row, "cited": []}, Query("q", "?", ("p2",), None))
    assert none["gold_precision"] is None and none["answer_correct"] is None and none["gold_score"] == 0.0


def test_no_stage_that_computes_a_reward_can_read_the_gold():
    for spec in STAGES:
        if spec.name in REWARDED:
            assert GOLD not in [r.artifact for r in spec.reads] and "heldout" not in spec.config
    assert GOLD.file in SCHEMAS


def _round(ws) -> dict:
    for stage in ("generate-reports", "self-evaluate", "harness-evolve", "train"):
        run_stage(ws, stage, 0)
    read = ws.store.read_table
    return {
        "solver": read("toy/round-0000/evaluate", "solver_rewards.parquet").to_pylist(),
        "evaluator": read("toy/round-0000/evaluate", "evaluator_rewards.parquet").to_pylist(),
        "samples": read("toy/round-0000/train", "samples.parquet").column("advantage").to_pylist(),
        "gold": read("toy/round-0000/generate", GOLD.file).to_pylist(),
    }


def test_changing_only_the_gold_changes_no_reward_and_no_update(toy_config, toy_queries, tmp_path):
    """The same round twice, the second with every gold answer and gold passage changed: the rewards and the
    advantages trained on are identical, the gold measures are not."""
    from conftest import ToyBackend

    first = _round(Workspace(toy_config, cache=tmp_path / "cache", make_backend=ToyBackend))
    other = tmp_path / "other-gold.jsonl"
    rows = [json.loads(line) for line in toy_queries.read_text().splitlines()]
    other.write_text("".join(json.dumps({**r, "gold_passage_ids": ["p4"], "gold_answer": "1066"}) + "\n" for r in rows))
    cfg = toy_config.model_copy(
        update={
            "data": toy_config.data.model_copy(update={"queries": str(other)}),
            "store": toy_config.store.model_copy(update={"root": str(tmp_path / "store2")}),
        }
    )
    second = _round(Workspace(cfg, cache=tmp_path / "cache", make_backend=ToyBackend))
    assert first["solver"] and first["solver"] == second["solver"]
    assert first["evaluator"] == second["evaluator"] and first["samples"] == second["samples"]
    assert first["gold"] != second["gold"]


def test_every_checkpoint_is_measured_on_the_same_held_out_queries(toy_workspace):
    ws = toy_workspace
    base = evaluate_heldout(ws, "base")
    stats = base.manifest.stats
    assert stats["queries"] == 2 and stats["reports"] == 2 and stats["answer_queries"] == 1
    assert stats["answer_accuracy"] == 1.0  # the toy answer states "2021", the held-out gold answer
    reports = ws.store.read_table(heldout_dir("toy", "base"), "reports.parquet").to_pylist()
    assert {r["query_id"] for r in reports} == {"h0", "h1"}  # never a training query
    assert evaluate_heldout(ws, "base").skipped  # its manifest matches: not redone
    for stage in ("generate-reports", "self-evaluate", "harness-evolve", "train"):
        run_stage(ws, stage, 0)
    after = evaluate_heldout(ws, "round-0")
    assert after.manifest.label == "round-0000" and not after.skipped
    again = ws.store.read_table(heldout_dir("toy", "round-0000"), "reports.parquet").to_pylist()
    assert [r["trajectory_id"] for r in again] == [r["trajectory_id"] for r in reports]  # paired across checkpoints


def test_a_query_file_without_held_out_rows_is_refused_by_name(toy_config, tmp_path):
    from conftest import ToyBackend

    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"id": "a", "query": "solar power"}\n')
    cfg = toy_config.model_copy(update={"data": toy_config.data.model_copy(update={"queries": str(plain)})})
    ws = Workspace(cfg, cache=tmp_path / "cache", make_backend=ToyBackend)
    assert not ws.query_set.has_gold
    with pytest.raises(ValueError, match="has no held-out queries"):
        evaluate_heldout(ws, "base")
