"""The front door stays small and the docs stay readable: the README at or under 150 lines, no line of the README
or the hand-written docs over 200 characters, and docs/measurements.md generated from records (the generator
tested on a sample record)."""

from __future__ import annotations

import importlib.util
import json

from tests.conftest import ROOT

HAND_WRITTEN = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "measurements-archive.md")


def test_the_readme_stays_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move findings to docs/results.md, details to docs/"


def test_no_doc_line_is_a_paragraph():
    long = [
        f"{p.name}:{i}: {len(line)} characters"
        for p in [ROOT / "README.md", *HAND_WRITTEN]
        for i, line in enumerate(p.read_text().splitlines(), start=1)
        if len(line) > 200
    ]
    assert not long, long


def test_measurements_render_from_records(tmp_path):
    spec = importlib.util.spec_from_file_location("render", ROOT / "benchmarks" / "render_measurements.py")
    render = importlib.util.module_from_spec(spec)  # benchmarks/ is scripts, not a package
    spec.loader.exec_module(render)
    record = {
        "benchmark": "toy_bench",
        "date": "2026-12-06T03:00:00Z",
        "commit": "abc1234",
        "dirty": True,
        "machine": {"cores": 2, "threads": 2, "gpu": None, "load_at_start": [0.1, 0.2, 0.3]},
        "command": "python benchmarks/toy_bench.py --seeds 0",
        "config": {"file": "configs/default.yaml", "overrides": []},
        "figures": {"seconds": 12.5, "rows": [{"arm": "score", "detection": 0.61234}], "ok": {"a": {"met": True}}},
    }
    (tmp_path / "toy.json").write_text(json.dumps(record))
    page = render.render(tmp_path)
    assert "## toy_bench, 2026-12-06T03:00:00Z, commit abc1234 (uncommitted changes)" in page
    assert (
        "`python benchmarks/toy_bench.py --seeds 0` on 2 cores, 2 threads, GPU none, load at start 0.1, 0.2, 0.3"
        in page
    )
    assert "| seconds | 12.5 |" in page and "| score | 0.6123 |" in page and "| a | True |" in page
