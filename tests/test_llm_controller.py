"""The LLM controller's client against a real OpenAI-compatible server on loopback (`score serve`, bundled model)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from score.config import HarnessConfig
from score.controller import propose
from score.harness import Proposal, seed_harness
from score.models.base import Message
from score.models.openai_client import ChatClient, EndpointError
from score.runner import run_stage, stage_folder

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "score.cli", "serve", "--port", str(port), "--set", "model.batch_size=4"],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as r:
                assert json.loads(r.read())["data"][0]["id"] == "smollm2-135m-instruct"
                break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_chat_round_trip_and_controller_proposals(server):
    client = ChatClient(server, "smollm2-135m-instruct", timeout_s=120)
    answers = client.chat([Message("user", "Name one planet.")], n=2, temperature=0.8, max_tokens=12, seed=1)
    assert len(answers) == 2 and all(a.strip() for a in answers)
    stats = [
        {
            "dimension": "insight",
            "status": "active",
            "mean": 9.1,
            "spread": 0.1,
            "detection": 0.5,
            "probes": 3,
            "max_corr": 0.4,
            "max_corr_with": "readability",
        }
    ]
    harness = seed_harness(HarnessConfig())
    proposals, raw = propose(client, {"reward_mean": 0.8, "saturation_rate": 0.6}, stats, harness, n=2, seed=0)
    assert len(raw) == 2 and all(isinstance(p, Proposal) and p.source == "llm controller" for p in proposals)
    print(f"\n[bundled model as controller] {len(proposals)}/2 answers parsed as a proposal: {proposals}")


@pytest.mark.slow
def test_harness_evolve_asks_the_controller_and_the_rules_gate_it(server, toy_workspace):
    ws = toy_workspace
    ws.cfg.harness.llm_controller.enabled = True
    ws.cfg.harness.llm_controller.base_url = server
    for stage in ("generate-reports", "self-evaluate", "harness-evolve"):
        run_stage(ws, stage, 0)
    decisions = ws.store.read_table(stage_folder(ws, "harness-evolve", 0), "decisions.parquet").to_pylist()
    proposals = [d for d in decisions if d["rule"] == "proposal"]
    sources = [json.loads(d["numbers"])["source"] for d in proposals]
    assert set(sources) <= {"llm controller", "evaluator"}
    for source in ("llm controller", "evaluator"):  # capped per source and kind, however many were offered
        assert sources.count(source) <= 3 * ws.cfg.harness.rules.max_proposals


def test_a_dead_endpoint_is_one_clear_error():
    client = ChatClient(f"http://127.0.0.1:{free_port()}/v1", "m", timeout_s=5)
    with pytest.raises(EndpointError, match="cannot reach .* is the server up"):
        client.chat([Message("user", "hi")])


@pytest.mark.slow
def test_bundled_model_as_endpoint_judge_fails_clearly(server, toy_workspace):
    """The benchmark's endpoint judge against the served 135M model: it does not write scores in the asked
    form (measured: 0 of 2 tasks x 3 runs; the test asks 1 task), so the evaluation stops with the fix named and
    writes no scores."""
    from score.benchmark import BenchmarkError, evaluate

    ws = toy_workspace
    ws.cfg.benchmark.limit, ws.cfg.benchmark.report_chars, ws.cfg.benchmark.explanation_chars = 1, 300, 0
    j = ws.cfg.benchmark.judge
    j.kind, j.endpoint.base_url = "endpoint", server
    with pytest.raises(BenchmarkError, match="answered no score in the form"):
        evaluate(ws, "base")
    assert ws.store.read_manifest("toy/benchmark/base") is None
