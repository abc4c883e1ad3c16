"""Manifests, and running work behind one: the only "is it done?" logic in the project.

A folder is finished when its `_manifest.json` exists; the manifest is written last and says what the files
are (rows, bytes, sha256), what produced them (a fingerprint of config and inputs) and the work's statistics.
`behind_manifest` is the one loop "skip if the fingerprint matches, else clear, write, manifest last" that the
stage runner and the benchmark evaluation share.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from score.store.schemas import SCHEMAS

if TYPE_CHECKING:
    from pathlib import Path

    from score.store.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class FileInfo:
    rows: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    """What `_manifest.json` holds. `stats` is the work's statistics dataclass as a dict (read it back with
    `stats_as`)."""

    stage: str  # the stage name, or the kind of work (benchmark, benchmark-reports)
    fingerprint: str  # of the config and inputs the files were made from: equal means "done already"
    files: dict[str, FileInfo]
    stats: dict[str, Any] = field(default_factory=dict)
    run: str = ""
    round: int | None = None
    label: str = ""  # benchmark evaluations: the checkpoint's label
    config_fingerprint: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # the declared config the work read
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> its fingerprint
    started_at: str = ""
    seconds: float = 0.0
    peak_rss_mib: float | None = None  # the process's peak resident memory during the work (None: not measured)
    devices: str | None = None  # the GPUs the process was given (CUDA_VISIBLE_DEVICES; None: not set)
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in raw.items() if k in known}  # older manifests may carry keys that are gone
        kept.setdefault("stage", "")
        kept.setdefault("fingerprint", "")
        kept["files"] = {name: FileInfo(**info) for name, info in raw.get("files", {}).items()}
        return cls(**kept)

    def content_fingerprint(self) -> str:
        """A hash of the files' sha256: what downstream work depends on, so a redo that writes the same bytes
        invalidates nothing and one that writes different bytes invalidates everything after it."""
        hashes = sorted(f"{name}:{info.sha256}" for name, info in self.files.items())
        return hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:16]

    def stats_as(self, kind: type[T]) -> T:
        """The statistics as their dataclass (fields missing from an older manifest take their defaults)."""
        names = {f.name for f in fields(kind)}  # type: ignore[arg-type]
        return kind(**{k: v for k, v in self.stats.items() if k in names})


def fingerprint(obj: Any) -> str:
    """A short, stable hash of a JSON-able object.

    >>> fingerprint({"b": 1, "a": [2]}) == fingerprint({"a": [2], "b": 1})
    True
    """
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class FolderWriter:
    """Writes the files of one folder and remembers their FileInfo for the manifest. Only the main process of
    a distributed launch writes (the others compute and return the same FileInfo-less work)."""

    def __init__(self, store: Store, folder: str, why: str = ""):
        self.store, self.folder, self.why = store, folder, why  # why: why finished work here is replaced, if any
        self.enabled = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch` only the main process writes
        self.files: dict[str, FileInfo] = {}
        self._cleared = False

    def _clear(self) -> None:
        """At the first write, never before: a run refused before it writes anything (a config the optimizer or an
        endpoint rejects) leaves the folder's finished work as it was."""
        if self.enabled and not self._cleared:
            if self.why:  # said when it happens: a refused rerun never says it
                log.info("%s: %s, its finished work replaced", self.store.display(self.folder), self.why)
            self.store.clear(self.folder)  # whatever an earlier or killed attempt left behind
        self._cleared = True

    def table(self, name: str, table: pa.Table) -> None:
        if self.enabled:
            self._clear()
            self.files[name] = self.store.write_table(self.folder, name, table)

    def rows(self, name: str, rows: list) -> None:
        """Write `rows` (dicts, or the artifact's typed rows) as the artifact `name`, typed by its schema."""
        dicts = [asdict(r) if is_dataclass(r) else r for r in rows]
        self.table(name, pa.Table.from_pylist(dicts, schema=SCHEMAS[name]))

    def file(self, name: str, local: Path) -> None:
        if self.enabled:
            self._clear()
            self.files[name] = self.store.write_file(self.folder, name, local)


def is_done(store: Store, folder: str, fingerprint: str) -> bool:
    """Whether `folder` is finished with `fingerprint` and its files are still those its manifest lists (what
    `behind_manifest` skips on, asked without running anything)."""
    old = store.read_manifest(folder)
    return old is not None and old.fingerprint == fingerprint and not store.verify(folder, old)


@dataclass
class Outcome:
    folder: str  # the user-facing address of the folder
    skipped: bool
    manifest: Manifest


def behind_manifest(
    store: Store,
    folder: str,
    meta: Manifest,
    work: Callable[[FolderWriter], Any],
    force: bool = False,
) -> Outcome:
    """Run `work` unless `folder`'s manifest has `meta.fingerprint` and its files are still those it lists
    (`Store.verify`; not with `force`); then write the manifest last: `meta` with the files written, the work's
    statistics (a dataclass or a dict) and its timing. A damaged folder is redone, with a warning naming the files.

    The folder is cleared at the work's first write (stale outputs never outlive a changed config, and a failure
    before any write, such as a config refused late, keeps the finished work and its manifest)."""
    old, why = store.read_manifest(folder), ""
    if old is not None and old.fingerprint == meta.fingerprint and not force:
        damaged = store.verify(folder, old)
        if not damaged:
            log.info("%s: done already (manifest matches), skipped", store.display(folder))
            return Outcome(store.display(folder), True, old)
        log.warning("%s: %s; redoing", store.display(folder), "; ".join(damaged))
    elif old is not None:
        why = "forced" if force else "config or inputs changed"  # said at the first write (FolderWriter)
    writer = FolderWriter(store, folder, why)
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    reset_peak_rss()
    stats = work(writer)
    meta.peak_rss_mib, meta.devices = peak_rss_mib(), os.environ.get("CUDA_VISIBLE_DEVICES")
    meta.files = writer.files
    meta.stats = asdict(stats) if is_dataclass(stats) else dict(stats or {})
    meta.started_at, meta.seconds = started.isoformat(), round(time.perf_counter() - t0, 2)
    meta.versions = versions()
    if writer.enabled:
        store.write_manifest(folder, meta)  # last: from now on the folder exists for readers
    return Outcome(store.display(folder), False, meta)


def reset_peak_rss() -> None:
    """Start measuring this process's peak resident memory afresh (Linux: clear_refs 5 resets VmHWM); elsewhere the
    peak stays the process's since it started."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mib() -> float:
    """The process's peak resident memory in MiB since `reset_peak_rss` (Linux), else since it started."""
    try:
        with open("/proc/self/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS: a fallback
    return round(kib / 1024, 1)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("score", "torch", "transformers", "pyarrow", "peft", "vllm"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
