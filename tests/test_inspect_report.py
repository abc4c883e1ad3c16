"""`score inspect`, `score runs` and `score report` on a finished toy round; their bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from score.inspect import check_round, list_runs_table, show_round, stage_markdown
from score.pipeline import EVALUATE, STAGE_NAMES
from score.report import write_report
from score.runner import run_stage

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def finished_round(toy_workspace):
    for stage in STAGE_NAMES:
        run_stage(toy_workspace, stage, 0)
    return toy_workspace


def test_inspect_shows_what_the_round_did(finished_round):
    ws = finished_round
    console = Console(record=True, width=200)
    show_round(console, ws.store, "toy", check_round(ws.store, "toy", None))
    text = console.export_text()
    for expected in (
        "generate-reports",
        "done",
        "saturation (queries with flat rewards)",
        "solver reward per query",
        "harness-evolve: decisions",
        "proposal",
        "no optimizer step: every group was flat",
        "rubric 0",
        "evidence:",
        "scores (rubric 0)",
    ):
        assert expected in text, expected
    console = Console(record=True, width=200)
    console.print(list_runs_table(ws.store))
    runs = console.export_text()
    assert "toy" in runs and "train" in runs
    md = stage_markdown(ws.store, "toy", 0, EVALUATE)
    assert md.startswith("# self-evaluate, round 0") and "## Solver rewards" in md and "solver_rewards.parquet" in md


def test_report_writes_pngs_and_an_html_page_with_a_baseline_on_the_same_axes(finished_round, tmp_path):
    ws = finished_round
    ws.cfg.run = "toy-static"
    ws.cfg.harness.mode = "static"
    for stage in ("generate-reports", "self-evaluate", "harness-evolve"):
        run_stage(ws, stage, 0)
    paths = write_report(ws.store, "toy", tmp_path / "out", baseline="toy-static")
    assert [p.name for p in paths] == [
        "reward.png",
        "saturation.png",
        "evaluator.png",
        "dimensions.png",
        "search.png",
        "train.png",
        "benchmark.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in paths)
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 7 and "toy vs toy-static" in page


def score(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "score.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["inspect", "../up"], "run name '../up' must be one folder name"),
        (["inspect", "a/b"], "run name 'a/b' must be one folder name"),
        (["inspect", "nope"], "run 'nope' not found"),
        (["inspect", "toy", "--round", "7"], "round 7 does not exist in run 'toy'; rounds there: 0..0"),
        (["inspect", "toy", "--stage", "bogus"], "unknown stage 'bogus'"),
        (["report", "toy", "--baseline", "../x"], "run name '../x'"),
        (["report", "nope"], "run 'nope' not found"),
        (["runs", "--set", "store.root=ftp://host/x"], "unknown store scheme 'ftp'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(finished_round, tmp_path, args, message):
    store = finished_round.cfg.store.root
    before = sorted(str(p) for p in Path(store).rglob("*"))
    done = score(*args, "--set", f"store.root={store}") if "store.root=ftp" not in " ".join(args) else score(*args)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], done.stderr
    assert sorted(str(p) for p in Path(store).rglob("*")) == before
    assert not (ROOT / "reports" / "nope").exists()
