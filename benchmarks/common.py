"""What every benchmark shares: `--config/--set` arguments and a warmed-up workspace over a temporary store."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
    return parser.parse_args()


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
