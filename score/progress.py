"""Progress of long loops, for a terminal and for the Prefect UI at once.

A `progress_bar` is a tqdm bar (the terminal) that also writes one log line every `LOG_EVERY_S` seconds and one at
the end, with the count, the rate and the time left: `score`'s logs reach the Prefect UI (flows/env.py), where a
bar cannot, so a stage that runs for minutes shows how far it is while it runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger("score.progress")

LOG_EVERY_S = 30.0


class progress_bar(tqdm):  # noqa: N801  (used like tqdm: `with progress_bar(total=..., desc=...) as bar`)
    """tqdm's bar, plus a log line every `LOG_EVERY_S` seconds and at the end (none when `disable`)."""

    def __init__(self, *args, **kwargs):
        self._quiet = bool(kwargs.get("disable"))
        self._t0 = self._logged = time.monotonic()
        self._logged_n: float | None = None  # the count the last line gave: the end is logged once
        super().__init__(*args, **kwargs)

    def update(self, n: float | None = 1) -> bool | None:
        shown = super().update(n)
        if not self._quiet and time.monotonic() - self._logged >= LOG_EVERY_S:
            self._log()
        return shown

    def close(self) -> None:
        if not self._quiet and self.n and self.n != self._logged_n:
            self._log()
        super().close()

    def _log(self) -> None:
        now = time.monotonic()
        self._logged, self._logged_n = now, self.n
        log.info(progress_line(self.desc or "progress", self.n, self.total, self.unit, now - self._t0))


def progress_line(desc: str, done: float, total: float | None, unit: str, seconds: float) -> str:
    """One readable progress line.

    >>> progress_line("round 0 reports", 640, 1280, "tok", 12.5)
    'round 0 reports: 640/1280 tok (50%), 51.2 tok/s, about 12 s left'
    >>> progress_line("train", 32, 32, "sample", 40.0)
    'train: 32/32 sample (100%), 0.8 sample/s, done in 40 s'
    """
    rate = done / seconds if seconds > 0 else 0.0
    if not total:
        return f"{desc}: {done:g} {unit}, {rate:.3g} {unit}/s"
    head = f"{desc}: {done:g}/{total:g} {unit} ({100 * done / total:.0f}%), {rate:.3g} {unit}/s"
    if done >= total:
        return f"{head}, done in {seconds:.0f} s"
    return f"{head}, about {(total - done) / rate:.0f} s left" if rate > 0 else head


def turn_line(desc: str, turn: int, turns: int, done: int, total: int, seconds: float) -> str:
    """One line for a phase of up to `turns` batched turns (the research agent's), `done` of `total` trajectories
    finished after `turn` of them: the time left is an upper bound, at the pace so far, if every trajectory takes
    every turn (a stage's, where each turn's bar gives only that turn's).

    >>> turn_line("round 0 research", 2, 4, 1, 4, 18.0)
    'round 0 research: turn 2 of at most 4, 1/4 trajectories finished, 18 s so far, at most about 18 s left'
    >>> turn_line("round 0 research", 3, 4, 4, 4, 30.0)
    'round 0 research: turn 3 of at most 4, 4/4 trajectories finished in 30 s'
    """
    head = f"{desc}: turn {turn} of at most {turns}, {done}/{total} trajectories finished"
    if done >= total:
        return f"{head} in {seconds:.0f} s"
    return f"{head}, {seconds:.0f} s so far, at most about {seconds / turn * (turns - turn):.0f} s left"


def key_values(stats: Mapping[str, Any]) -> str:
    """A stage's statistics as one readable log line: `key value` pairs, floats to 4 significant digits.

    >>> key_values({"reports": 8, "valid_share": 0.753219, "active": ["a", "b"], "kl_mean": None})
    'reports 8 · valid_share 0.7532 · active a, b · kl_mean -'
    """
    return " · ".join(f"{k} {_value(v)}" for k, v in stats.items())


def _value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v) or "none"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(x)}" for k, x in v.items()) or "none"
    return str(v)
