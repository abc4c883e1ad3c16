"""Benchmark evaluation (score eval), outside reports (score judge), and their bad input, with the toy backend.

The toy judge's digits follow the citations it sees, so the numbers here test the machinery (files, RACE
arithmetic, spread over runs, skips, errors), not a model. The real model runs in test_cli_e2e.py."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from score.benchmark import BENCHMARKS, BenchmarkError, evaluate, load_tasks, read_reference
from score.checkpoints import CheckpointError
from score.config import BenchmarkConfig
from score.judging import judge_file
from score.models.openai_client import EndpointError
from score.runner import run_stage


def test_shipped_benchmark_loads_with_its_licence():
    en, every = load_tasks(BenchmarkConfig()), load_tasks(BenchmarkConfig(languages="all"))
    assert len(en) == 50 and len(every) == 100 and {t.language for t in en} == {"en"}
    assert [t.id for t in load_tasks(BenchmarkConfig(limit=3))] == ["51", "52", "53"]
    assert all(abs(sum(t.weights.values()) - 1) < 1e-6 and 20 <= len(t.criteria) <= 32 for t in every)
    folder = BENCHMARKS["deepresearch-bench"][0].parent
    assert "Apache License" in (folder / "LICENSE-deepresearch-bench").read_text()
    assert "DeepResearch Bench" in (folder / "README.md").read_text()


def _files(tmp_path: Path, queries: list, criteria: list) -> tuple[Path, Path]:
    q, c = tmp_path / "q.jsonl", tmp_path / "c.jsonl"
    q.write_text("\n".join(json.dumps(x) for x in queries))
    c.write_text("\n".join(json.dumps(x) for x in criteria))
    return q, c


GOOD_C = {
    "id": 1,
    "dimension_weight": {"insight": 1.0},
    "criterions": {"insight": [{"criterion": "deep", "explanation": "", "weight": 1.0}]},
}


@pytest.mark.parametrize(
    "queries, criteria, message",
    [
        ([{"prompt": "p", "language": "en"}], [GOOD_C], "q.jsonl:1 has no 'id'"),
        ([{"id": 1, "prompt": "p", "language": "en"}], [], "has no line for task 1"),
        (
            [{"id": 1, "prompt": "p", "language": "en"}],
            [{**GOOD_C, "criterions": {}}],
            "dimension 'insight' has weight 1.0 but no criteria",
        ),
        (
            [{"id": 1, "prompt": "p", "language": "en"}],
            [{**GOOD_C, "criterions": {"insight": [{"criterion": "x"}]}}],
            "numeric 'weight'",
        ),
        ([{"id": 1, "prompt": "p", "language": "en"}] * 2, [GOOD_C], "repeats task id 1"),
        ([{"id": 1, "prompt": "p", "language": "zh"}], [GOOD_C], "no task in language 'en'"),
    ],
)
def test_bad_benchmark_files_name_the_line_and_the_fix(tmp_path, queries, criteria, message):
    with pytest.raises(BenchmarkError, match=message):
        load_tasks(BenchmarkConfig(), _files(tmp_path, queries, criteria))


def test_reference_file_must_cover_the_tasks(tmp_path):
    tasks = load_tasks(BenchmarkConfig(limit=2))
    path = tmp_path / "ref.csv"
    pd.DataFrame({"id": ["51"], "report": ["x"]}).to_csv(path, index=False)
    with pytest.raises(BenchmarkError, match=r"no report for task\(s\) \['52'\]"):
        read_reference(str(path), tasks)
    pd.DataFrame({"id": ["51", "52", "7000"], "report": ["x", "y", "z"]}).to_csv(path, index=False)
    with pytest.raises(BenchmarkError, match=r"not benchmark tasks: \['7000'\]"):
        read_reference(str(path), tasks)
    pd.DataFrame({"task": ["51"], "report": ["x"]}).to_csv(path, index=False)
    with pytest.raises(BenchmarkError, match="no column 'id'"):
        read_reference(str(path), tasks)
    pd.DataFrame({"id": [51, 52], "report": ["x", "y"]}).to_json(tmp_path / "ref.jsonl", orient="records", lines=True)
    assert read_reference(str(tmp_path / "ref.jsonl"), tasks) == {"51": "x", "52": "y"}


def _bench_ws(toy_workspace, **updates):
    ws = toy_workspace
    ws.cfg.benchmark.limit = 2
    for k, v in updates.items():
        setattr(ws.cfg.benchmark, k, v)
    return ws


def test_eval_writes_scores_with_spread_and_skips_when_done(toy_workspace):
    ws = _bench_ws(toy_workspace)
    out = evaluate(ws, "base")
    folder = "toy/benchmark/base"
    assert not out.skipped and out.manifest.stats["tasks"] == 2 and out.manifest.stats["judge_runs"] == 3
    summary = ws.store.read_table(folder, "benchmark.parquet").to_pylist()
    assert [s["dimension"] for s in summary][0] == "overall" and all(s["runs"] == 3 for s in summary)
    assert {"comprehensiveness", "insight", "instruction_following", "readability"} <= {s["dimension"] for s in summary}
    judgements = ws.store.read_table(folder, "judgements.parquet").to_pandas()
    assert (
        set(judgements.run_idx) == {0, 1, 2}
        and judgements.target_first.tolist().count(True) == 2 * len(judgements) // 3
    )
    assert judgements.target.between(0, 10).all() and judgements.target_expected.notna().all()
    tasks = ws.store.read_table(folder, "task_scores.parquet").to_pandas()
    assert set(tasks.task_id) == {"51", "52"} and tasks.score.between(0, 1).all()
    # the base checkpoint against the base reference: the same reports, so the judge can only add noise around 0.5
    reports = ws.store.read_table("toy/benchmark/reports/base", "reports.parquet").to_pylist()
    assert [r["query_id"] for r in reports] == ["51", "52"]
    again = evaluate(ws, "base")
    assert again.skipped and again.manifest == out.manifest


def test_eval_of_a_trained_round_and_bad_checkpoints(toy_workspace):
    ws = _bench_ws(toy_workspace)
    with pytest.raises(CheckpointError, match="no finished train stage"):
        evaluate(ws, "latest")
    with pytest.raises(CheckpointError, match="neither 'base', 'latest', 'round-N' nor a folder"):
        evaluate(ws, "nowhere/at/all")
    assert not ws.store.fs.exists(ws.store.path("toy", "benchmark"))  # bad input wrote nothing


def test_judge_endpoint_down_fails_before_anything_is_written(toy_workspace):
    ws = _bench_ws(toy_workspace)
    ws.cfg.benchmark.judge.kind = "endpoint"
    ws.cfg.benchmark.judge.endpoint.base_url = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    ws.cfg.benchmark.judge.endpoint.timeout_s = 5
    with pytest.raises(EndpointError, match="cannot reach http://127.0.0.1:9/v1"):
        evaluate(ws, "base")
    assert not ws.store.fs.exists(ws.store.path("toy", "benchmark"))


def test_judge_outside_reports_keeps_columns_and_ranks_cited_higher(toy_workspace, tmp_path):
    ws = toy_workspace
    src = tmp_path / "outside.jsonl"
    rows = [
        {
            "id": "a",
            "query": "How do solar and wind compare?",
            "report": "# R\nSolar grows [1]. Wind grows [2].",
            "author": "x",
        },
        {
            "id": "b",
            "query": "How do solar and wind compare?",
            "report": "# R\nSolar grows. Wind grows.",
            "author": "y",
        },
        {"id": "c", "query": "What is battery storage?", "report": "Batteries store power [1].", "author": "z"},
    ]
    src.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "judged.parquet"
    judged = judge_file(ws, src, out, checkpoint=None)  # no trained round: the base model judges
    table = pq.read_table(out)
    frame = table.to_pandas()
    assert list(frame.id) == ["a", "b", "c"] and list(frame.author) == ["x", "y", "z"]
    assert frame.overall.between(0, 1).all() and frame.overall[0] > frame.overall[1]
    dims = [c for c in frame.columns if c.startswith("dim_")]
    assert dims and frame[dims].notna().all().all()
    assert {"rubric_idx", "pass_idx", "dimension", "criterion", "score"} <= set(frame.criteria[0][0])
    assert table.schema.metadata[b"score.checkpoint"] == b"base" and judged.attrs["checkpoint_label"] == "base"


def test_judge_bad_input_leaves_no_output(toy_workspace, tmp_path):
    ws = toy_workspace
    out = tmp_path / "judged.parquet"
    src = tmp_path / "in.csv"
    pd.DataFrame({"question": ["q"], "report": ["r"]}).to_csv(src, index=False)
    with pytest.raises(BenchmarkError, match="no column 'query'"):
        judge_file(ws, src, out)
    pd.DataFrame({"query": ["q", ""], "report": ["r", "s"]}).to_csv(src, index=False)
    with pytest.raises(BenchmarkError, match=r"row\(s\) \[1\] have an empty query"):
        judge_file(ws, src, out)
    with pytest.raises(BenchmarkError, match="must end in .parquet"):
        judge_file(ws, src, tmp_path / "judged.csv")
    with pytest.raises(BenchmarkError, match="does not exist"):
        judge_file(ws, tmp_path / "missing.csv", out)
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_judge_uses_the_runs_latest_harness(toy_workspace, tmp_path):
    ws = toy_workspace
    for stage in ("generate-reports", "self-evaluate", "harness-evolve"):
        run_stage(ws, stage, 0)
    from score.judging import latest_harness

    harness, fingerprint = latest_harness(ws)
    assert fingerprint != "seed" and not fingerprint.startswith("seed:")  # round 0's harness-evolve output
    src = tmp_path / "in.parquet"
    pd.DataFrame({"query": ["What is solar power?"], "report": ["Solar [1]."]}).to_parquet(src)
    frame = judge_file(ws, src, tmp_path / "out.parquet")
    assert {f"dim_{d.id}" for d in harness.active} <= set(frame.columns)
    assert frame.attrs["harness_version"] == str(harness.version)


class _Judge(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that prefers the article citing a source: 7 for it, 3 for the other."""

    seeds: list[int] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seeds.append(body["seed"])
        prompt = body["messages"][-1]["content"]
        first = prompt.split("Article 1:\n", 1)[-1].split("Article 2:\n", 1)[0]  # the reachability check has no article
        n = len(re.findall(r"^\d+\. \(", prompt, re.M))  # the numbered criteria
        a, b = (7, 3) if "[1]" in first else (3, 7)
        answer = "\n".join(f"{i}: {a} {b}" for i in range(1, n + 1))
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_):
        pass


def test_endpoint_judge_with_a_reference_file_alternates_positions(toy_workspace, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ws = _bench_ws(toy_workspace)
        ref = tmp_path / "ref.jsonl"
        ref.write_text("\n".join(json.dumps({"id": i, "report": "An uncited report."}) for i in (51, 52)))
        ws.cfg.benchmark.reference = str(ref)
        j = ws.cfg.benchmark.judge
        j.kind, j.endpoint.base_url, j.seeds = "endpoint", f"http://127.0.0.1:{server.server_port}/v1", [5, 6, 7]
        out = evaluate(ws, "base")
    finally:
        server.shutdown()
    assert _Judge.seeds[1:] == [
        5,
        5,
        6,
        6,
        7,
        7,
    ]  # after the reachability check: one request per task and run, with its seed
    stats = out.manifest.stats
    # the toy solver cites [1]; the judge prefers the cited article wherever it stands: 7 / (7 + 3) in every run
    assert (
        stats["score"] == pytest.approx(0.7)
        and stats["score_std"] == pytest.approx(0.0)
        and stats["unparsed_scores"] == 0
    )
    assert stats["judge"].startswith("endpoint:") and stats["reference"] == str(ref)
    judgements = ws.store.read_table("toy/benchmark/base", "judgements.parquet").to_pandas()
    assert (
        set(judgements.target) == {7.0}
        and set(judgements.reference) == {3.0}
        and judgements.target_expected.isna().all()
    )


def test_checkpoint_folders_cut_short_or_of_another_model_are_refused_by_name(toy_workspace, tmp_path):
    """Checked on the safetensors headers, before a model loads: a torn file, and an adapter whose matrices do not
    fit the base model's layers (its base here: one 8 x 4 layer)."""
    import torch
    from safetensors.torch import save_file

    from score.history import resolve

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    save_file({"model.layers.0.self_attn.q_proj.weight": torch.zeros(8, 4)}, base / "model.safetensors")
    ws = toy_workspace
    ws.cfg.model.path = str(base)

    def adapter(name: str, width: int) -> str:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"r": 2}))
        key = "base_model.model.model.layers.0.self_attn.q_proj"
        tensors = {f"{key}.lora_A.weight": torch.zeros(2, width), f"{key}.lora_B.weight": torch.zeros(8, 2)}
        save_file(tensors, folder / "adapter_model.safetensors")
        return str(folder)

    assert resolve(ws, adapter("fits", 4))[0].startswith("folder-")
    with pytest.raises(CheckpointError, match=r"lora_A.weight is \[2, 5\], but the base model's .*q_proj is \[8, 4\]"):
        resolve(ws, adapter("other", 5))
    torn = Path(adapter("torn", 4)) / "adapter_model.safetensors"
    torn.write_bytes(torn.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="adapter_model.safetensors is not a readable safetensors file"):
        resolve(ws, str(torn.parent))
