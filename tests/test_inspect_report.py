"""`score inspect`, `score runs` and `score report` on a finished toy round; their bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import error_lines
from rich.console import Console

from score.inspection import check_round, list_runs_table, sample_report, show_round, stage_markdown
from score.pipeline import EVALUATE, STAGE_NAMES, STAGES
from score.report import PLOTS, figure, load_series, plots_into_store, write_report
from score.runner import run_stage

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def finished_round(toy_workspace):
    for stage in STAGE_NAMES:
        run_stage(toy_workspace, stage, 0)
    return toy_workspace


@pytest.fixture(scope="module")
def shared_round(tmp_path_factory):
    """A finished toy round made once for the module's tests that only read it (each checks it wrote nothing)."""
    from conftest import ToyBackend, make_toy_corpus, toy_run_config

    from score.workspace import Workspace

    folder = tmp_path_factory.mktemp("shared-round")
    ws = Workspace(toy_run_config(folder, make_toy_corpus(folder)), cache=folder / "cache", make_backend=ToyBackend)
    for stage in STAGE_NAMES:
        run_stage(ws, stage, 0)
    return ws


def test_inspect_shows_what_the_round_did(finished_round):
    ws = finished_round
    console = Console(record=True, width=200)
    show_round(console, ws.store, "toy", check_round(ws.store, "toy", None))
    text = console.export_text()
    for expected in (
        "generate-reports",
        "done",
        "saturation (share of queries with flat rewards)",
        "solver reward per query",
        "harness-evolve: decisions",
        "proposal",
        "train: optimizer steps",  # the pairs of originals and copies give the toy's judgements spread
        "evaluator share (weight)",
        "rubric 0",
        "evidence:",
        "scores (rubric 0)",
        "research: 2 tool calls, answered",  # the react agent's turns, each call and what it found
        "1. search 'solar and wind power' -> [1] ",
        "2. read '1' -> [1] ",
        "citation precision",
    ):
        assert expected in text, expected
    console = Console(record=True, width=200)
    console.print(list_runs_table(ws.store))
    runs = console.export_text()
    assert "toy" in runs and "train" in runs
    md = stage_markdown(ws.store, "toy", 0, EVALUATE)
    assert md.startswith("# self-evaluate, round 0") and "## Solver rewards" in md and "solver_rewards.parquet" in md
    assert "| valid reports | 1 |" not in text and "share of reports valid" in text and "%" in text  # shares


def test_a_round_with_no_probed_report_shows_no_detection_number(toy_workspace):
    """Detection over zero probed reports is no number (not chance's 0.5): null in the summary, said in words by
    inspect, left out of the trackers' numbers."""
    from score.store.schemas import SUMMARY
    from score.tracking import numbers

    ws = toy_workspace
    ws.cfg.evaluate.probe_share = 0.0
    for stage in ("generate-reports", "self-evaluate"):
        run_stage(ws, stage, 0)
    [summary] = ws.store.read_rows(f"{ws.cfg.run}/round-0000/evaluate", SUMMARY)
    assert summary.probed_reports == 0 and summary.detection is None
    console = Console(record=True, width=200)
    show_round(console, ws.store, "toy", 0)
    line = next(x for x in console.export_text().splitlines() if "corruption detection" in x)
    assert "none probed" in line
    stats = ws.store.read_manifest(f"{ws.cfg.run}/round-0000/evaluate").stats
    assert "self-evaluate/detection" not in numbers(stats, "self-evaluate")


def test_every_stage_page_follows_the_same_sample_report(finished_round):
    ws = finished_round
    r = sample_report(ws.store, "toy", 0)
    pages = {spec.name: stage_markdown(ws.store, "toy", 0, spec) for spec in STAGES}
    line = f"Sample report (the same in every stage of the round): `{r['query_id']}`, report {r['sample_idx']}"
    assert all(line in page for page in pages.values())
    assert r["report"].splitlines()[0] in pages["generate-reports"]
    assert f"**{r['trajectory_id'][:8]}**" in pages["self-evaluate"]  # its reward row, in its own query's group
    assert "## The sample report's trained spans" in pages["train"]
    assert "- research: 2 tool calls, answered" in pages["generate-reports"]
    assert "- step 1: search" in pages["generate-reports"] and "- step 2: read" in pages["generate-reports"]
    assert "| validity | citation precision |" in pages["self-evaluate"]


def test_the_sample_report_is_a_non_empty_one(tmp_path):
    """The report every stage page follows is the first that says something, not the first query's first."""
    import pyarrow as pa

    from score.config import StoreConfig
    from score.store.manifest import Manifest
    from score.store.schemas import REPORTS_SCHEMA
    from score.store.store import Store
    from tests.test_artifacts import toy_reports

    store = Store(StoreConfig(root=str(tmp_path)))
    rows = [r | {"sample_idx": i, "trajectory_id": f"t{i}"} for i, r in enumerate(toy_reports(3).to_pylist())]
    rows[0]["report"] = "  "
    info = store.write_table(
        "toy/round-0000/generate", "reports.parquet", pa.Table.from_pylist(rows, schema=REPORTS_SCHEMA)
    )
    store.write_manifest(
        "toy/round-0000/generate", Manifest(stage="generate-reports", fingerprint="f", files={"reports.parquet": info})
    )
    assert sample_report(store, "toy", 0)["sample_idx"] == 1


def _legend_misses(fig) -> list[str]:
    """What a figure draws with data but its legend does not name (lines, bands, error bars, bar colours)."""
    legend = fig.axes[0].get_legend()
    names = [t.get_text() for t in legend.get_texts()] if legend else []
    colours = {
        tuple(h.get_facecolor()) for h in (legend.legend_handles if legend else []) if hasattr(h, "get_facecolor")
    }
    missing = []
    for ax in fig.axes:
        in_containers = {id(c) for box in ax.containers if box.get_label() in names for c in box.get_children()}
        for artist in list(ax.lines) + list(ax.collections):
            has_data = len(artist.get_xydata()) if hasattr(artist, "get_xydata") else len(artist.get_paths())
            if has_data and artist.get_label() not in names and id(artist) not in in_containers:
                missing.append(f"{type(artist).__name__} {artist.get_label()!r}")
        for bar in ax.patches:
            if bar.get_width() > 0 and tuple(bar.get_facecolor()) not in colours:
                missing.append(f"bar coloured {bar.get_facecolor()}")
    return missing + [f"duplicate legend entry {n!r}" for n in set(names) if names.count(n) > 1]


@pytest.mark.parametrize("rounds", [1, 2])
def test_every_plot_has_labelled_axes_and_every_series_drawn_in_its_legend(toy_workspace, rounds):
    ws = toy_workspace
    for r in range(rounds):
        for stage in STAGE_NAMES:
            run_stage(ws, stage, r)
    runs = [load_series(ws.store, "toy")]
    assert runs[0].rounds == list(range(rounds))
    for name in PLOTS:
        fig = figure(name, runs)
        assert fig.axes[0].get_xlabel() and all(ax.get_ylabel() for ax in fig.axes), name
        assert _legend_misses(fig) == [], name


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
        "heldout.png",
        "hacking.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in paths)
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(paths) and "toy vs toy-static" in page
    folder, staged = plots_into_store(ws.store, "toy", baseline="toy-static")  # by default, with the run
    assert folder == f"{ws.store.url}/toy/plots-vs-toy-static" and [p.name for p in staged] == [p.name for p in paths]
    assert (Path(ws.store.path("toy/plots-vs-toy-static")) / "index.html").exists()


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
def test_bad_input_is_one_line_exit_2_and_writes_nothing(shared_round, tmp_path, args, message):
    store = shared_round.cfg.store.root
    before = sorted(str(p) for p in Path(store).rglob("*"))
    done = score(*args, "--set", f"store.root={store}") if "store.root=ftp" not in " ".join(args) else score(*args)
    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], done.stderr
    assert sorted(str(p) for p in Path(store).rglob("*")) == before
    assert not (ROOT / "reports" / "nope").exists()


def test_runs_says_where_it_looked_when_the_store_is_missing_or_empty(tmp_path):
    missing = score("runs", "--set", f"store.root={tmp_path / 'nowhere'}")
    assert missing.returncode == 2 and f"no store at {tmp_path / 'nowhere'}" in missing.stderr
    assert "--set store.root=PATH" in missing.stderr and not (tmp_path / "nowhere").exists()
    (tmp_path / "empty").mkdir()
    empty = score("runs", "--set", f"store.root={tmp_path / 'empty'}")
    assert empty.returncode == 0 and f"no runs in {tmp_path / 'empty'} yet" in empty.stderr, empty.stderr
    assert "--set store.root=PATH" in empty.stderr and not empty.stdout.strip()
