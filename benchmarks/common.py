"""What every benchmark shares: `--config/--set` arguments, a warmed-up workspace over a temporary store, and the
record each run writes (`write_record`: one JSON file per run under benchmarks/records/, the numbers the docs cite)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from score.config import load_config
from score.models import Message, SamplingParams
from score.workspace import Workspace


def bench_args(
    description: str, default_config: str = "configs/default.yaml", parser: argparse.ArgumentParser | None = None
) -> argparse.Namespace:
    """The benchmark's arguments: `--config` and `--set` added to `parser` (its own arguments, if any)."""
    parser = parser or argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=default_config)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    args.load_at_start = os.getloadavg()  # what else was running when it started: part of every record
    return args


RECORDS = Path(__file__).resolve().parent / "records"


def _git(*argv: str) -> str:
    out = subprocess.run(["git", *argv], capture_output=True, text=True, cwd=RECORDS.parent, check=False)
    return out.stdout.strip()


def write_record(benchmark: str, args: argparse.Namespace, cfg, figures: dict, folder: Path = RECORDS) -> Path:
    """One JSON record of a benchmark run: what ran (benchmark, command, config, commit and whether the tree was
    dirty), where (cores, torch threads, GPU, load average at start) and when, and its figures. Named
    `<benchmark>-<UTC time>-<commit>.json`; `benchmarks/render_measurements.py` renders them into the docs."""
    import torch

    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    record = {
        "benchmark": benchmark,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit,
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "machine": {
            "cores": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(),
            "load_at_start": [round(x, 2) for x in getattr(args, "load_at_start", os.getloadavg())],
        },
        "command": " ".join(["python", *sys.argv]),
        "config": {
            "file": getattr(args, "config", None),
            "overrides": getattr(args, "overrides", []),
            "resolved": cfg.model_dump(mode="json") if cfg is not None else None,
        },  # fmt: skip
        "figures": figures,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{benchmark}-{record['date'].replace(':', '')}-{commit}.json"
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return path


@contextmanager
def warm_workspace(config: str, overrides: list[str]) -> Iterator[Workspace]:
    """A Workspace over a temporary store whose model and search index are loaded and warm, so the timed parts
    measure stages, not start-up."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(load_config(config, [*overrides, f"store.root={tmp}", "run=bench"]))
        backend = ws.backend()
        _ = ws.search  # index built or loaded outside the timed part, as in a campaign after its first stage
        backend.sample([backend.render([Message("user", "Hi")])], SamplingParams(max_tokens=4))  # warm-up
        yield ws


@contextmanager
def bench_workspace(description: str, default_config: str = "configs/default.yaml") -> Iterator[Workspace]:
    """Parse the benchmark's arguments and yield a warm Workspace (`warm_workspace`) of its config."""
    args = bench_args(description, default_config)
    with warm_workspace(args.config, args.overrides) as ws:
        yield ws


def best_seconds(fn, repeats: int) -> float:
    """The shortest wall-clock seconds of `repeats` calls of `fn`, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def equal_prompts(tokenize, batch: int, tokens: int) -> list[list[int]]:
    """`batch` prompts of exactly `tokens` ids of real text (equal lengths: no padding in any engine)."""
    text = " ".join(f"Section {i}: wind turbines, solar cells and the storage of energy." for i in range(tokens))
    return [tokenize(f"Report {b}. {text}")[:tokens] for b in range(batch)]
