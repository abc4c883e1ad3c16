"""The generate-reports stage and the runner's manifest logic, on a toy backend and a toy corpus."""

import pyarrow as pa
import pyarrow.parquet as pq

from score.runner import run_stage, stage_folder
from score.store.schemas import REPORTS_SCHEMA


def test_generate_writes_k_trajectories_per_query_behind_a_manifest(toy_workspace):
    toy_workspace.cfg = toy_workspace.cfg.model_copy(
        update={"generate": toy_workspace.cfg.generate.model_copy(update={"agent": "plan"})}
    )
    out = run_stage(toy_workspace, "generate-reports", 0)
    assert not out.skipped
    folder = stage_folder(toy_workspace, "generate-reports", 0)
    table = toy_workspace.store.read_table(folder, "reports.parquet")
    assert table.schema.equals(REPORTS_SCHEMA)
    rows = table.to_pylist()
    K, Q = toy_workspace.cfg.generate.samples_per_query, toy_workspace.cfg.data.queries_per_round
    assert len(rows) == K * Q
    assert sorted(r["sample_idx"] for r in rows if r["query_id"] == rows[0]["query_id"]) == list(range(K))
    for r in rows:
        assert r["plan"] == ["solar power", "wind turbine"][: toy_workspace.cfg.generate.subquestions]
        assert r["searches"] and r["sources"] and r["cited"] == [1, 2]
        assert [s["name"] for s in r["spans"]] == ["plan", "report"]
        assert all(len(s["token_ids"]) == len(s["logprobs"]) > 0 for s in r["spans"])
        assert r["sources"][0]["passage_id"] in {"p1", "p2"}
    for q in {r["query_id"] for r in rows}:  # one head (system and query) per query, the trainer packs on it
        spans = [s for r in rows if r["query_id"] == q for s in r["spans"]]
        query = next(r["query"] for r in rows if r["query_id"] == q)
        assert len({s["prefix"] for s in spans}) == 1 and spans[0]["prefix"].endswith(f"Research query: {query}\n\n")
        assert spans[0]["prompt"].startswith("List") and spans[1]["prompt"].startswith("Sources:\n[1]")
    m = out.manifest
    assert m.stage == "generate-reports" and m.files["reports.parquet"].rows == K * Q
    assert set(m.inputs) == {"queries", "corpus", "policy"} and m.stats["reports"] == K * Q
    assert "storage_options" not in str(m.config)  # the store section (where secrets could live) is never copied


def test_react_trajectories_are_one_sequence_with_a_mask_and_readable_turns(toy_workspace):
    out = run_stage(toy_workspace, "generate-reports", 0)
    rows = toy_workspace.store.read_table(stage_folder(toy_workspace, "generate-reports", 0), "reports.parquet")
    K, Q = toy_workspace.cfg.generate.samples_per_query, toy_workspace.cfg.data.queries_per_round
    for r in rows.to_pylist():
        assert r["agent"] == "react" and r["answered"] and r["finish_reason"] == "stop" and r["tool_calls"] == 2
        assert [t["tool"] for t in r["turns"]] == ["search", "read", "answer"]
        assert r["turns"][0]["argument"] == "solar and wind power" and r["turns"][1]["passage_ids"] == ["p1"]
        assert r["report"].startswith("# Report") and r["cited"] == [1, 2]
        assert [s["passage_id"] for s in r["sources"]] == r["searches"][0]["passage_ids"] == ["p1", "p2"]
        [span] = r["spans"]
        assert (
            span["name"] == "trajectory" and span["prompt"] == "" and "</search> searches the library" in span["prefix"]
        )
        assert len(span["token_ids"]) == len(span["logprobs"]) == len(span["mask"])
        # the sequence is the prefilled call, then turns and tool outputs, every tool output masked out
        assert span["text"].startswith("<search>solar and wind power</search>\n<results>\n[1] Solar power")
        assert span["mask"][: len("<search>")] == [0] * len("<search>")  # the toy spells a token per character
        written = "".join(ch for ch, m in zip(span["text"], span["mask"]) if m)
        assert "<results>" not in written and "<passage" not in written and written.endswith("</answer>")
        assert r["completion_tokens"] == sum(span["mask"])
    stats = out.manifest.stats
    assert stats["reports"] == K * Q and stats["answer_rate"] == 1.0 and stats["mean_tool_calls"] == 2.0
    assert stats["multi_call_share"] == 1.0 and stats["cut_rate"] == 0.0 and stats["tool_errors"] == 0


def test_rerun_skips_and_changes_redo(toy_workspace):
    first = run_stage(toy_workspace, "generate-reports", 0)
    assert run_stage(toy_workspace, "generate-reports", 0).skipped
    assert not run_stage(toy_workspace, "generate-reports", 0, force=True).skipped
    toy_workspace.cfg.generate.passage_chars = 100  # a config change the outputs depend on
    redone = run_stage(toy_workspace, "generate-reports", 0)
    assert not redone.skipped and redone.manifest.fingerprint != first.manifest.fingerprint
    toy_workspace.cfg.campaign.rounds = 7  # one they do not depend on
    assert run_stage(toy_workspace, "generate-reports", 0).skipped


def test_a_folder_without_manifest_is_redone_from_scratch(toy_workspace, tmp_path):
    folder = stage_folder(toy_workspace, "generate-reports", 0)
    local = tmp_path / "store" / folder
    local.mkdir(parents=True)
    (local / ".tmp-1234-reports.parquet").write_bytes(b"half a file")  # what a SIGKILL mid-write leaves
    pq.write_table(pa.table({"x": [1]}), local / "reports.parquet")  # a stale file of another shape
    out = run_stage(toy_workspace, "generate-reports", 0)
    assert not out.skipped
    assert sorted(p.name for p in local.iterdir()) == ["_manifest.json", "gold.parquet", "reports.parquet"]


def test_a_forced_rerun_invalidates_downstream_only_when_its_outputs_change(toy_workspace):
    ws = toy_workspace
    run_stage(ws, "generate-reports", 0)
    run_stage(ws, "self-evaluate", 0)
    run_stage(ws, "generate-reports", 0, force=True)  # same seeds, same outputs
    assert run_stage(ws, "self-evaluate", 0).skipped
    ws.cfg.generate.max_sources = 1  # fewer sources -> different trajectories
    run_stage(ws, "generate-reports", 0)
    assert not run_stage(ws, "self-evaluate", 0).skipped
