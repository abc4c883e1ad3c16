"""One writer per run: a lease file in the store (`<run>/_lease.json`), on a local folder and on S3 alike.

Whatever writes a run's stage folders holds its lease: `run_stage` for one stage, the campaign and round flows
for all of theirs (so another writer cannot slip in between two stages). The holder renews it from a daemon
thread every third of `store.lease_seconds`; a holder that dies (SIGKILL included) stops renewing, and the lease
expires `store.lease_seconds` after its last renewal, so no run stays locked for good (at once when the holder
was a process on this host that no longer exists). A second writer fails at
once with a message naming the holder. Within one process the lease is re-entrant (a campaign's stages run
inside its own lease). Only the main process of a distributed launch takes it (the others write nothing).

Taking a lease is write, wait, read back: two writers starting in the same instant both write, and the one
whose write was overwritten sees the other's id and backs off (stores have no compare-and-swap; the window is
the store's write latency). Read-only commands never take it. A worker process running a stage's shards for the
holder (the round flow's process workers) writes on its behalf (`holding(..., on_behalf_of=holder())`): it checks
that the lease is live and the holder's, and takes none.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from score.store.store import Store

LEASE = "_lease.json"
_HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # this process
_held: dict[str, tuple[int, threading.Event]] = {}  # lease path -> (depth, stop renewing)
_lock = threading.Lock()


class RunLocked(RuntimeError):
    """Another process is writing the run."""


def holder() -> str:
    """This process's holder id, as its leases record it (what a worker writing on its behalf is handed)."""
    return _HOLDER


@contextmanager
def holding(store: Store, run: str, on_behalf_of: str | None = None) -> Iterator[None]:
    """Hold `run`'s lease for the duration (re-entrant in this process); raise `RunLocked` when another holds it.

    `on_behalf_of`: a holder id (`holder()`) this process writes for, e.g. the round flow that dispatched a stage's
    shards to process workers: the lease must be live and that holder's (it renews it), else `RunLocked`."""
    if int(os.environ.get("RANK", "0")) != 0:  # under `accelerate launch` only the main process writes
        yield
        return
    if on_behalf_of is not None and on_behalf_of != _HOLDER:
        current = _read(store, store.path(run, LEASE))
        if not current or current["holder"] != on_behalf_of or not _live(current):
            raise RunLocked(
                f"this worker writes run {run!r} for {on_behalf_of}, which no longer holds its lease "
                f"({store.display(run, LEASE)}: {current['holder'] if current else 'none'}); rerun the round"
            )
        yield
        return
    path = store.path(run, LEASE)
    with _lock:
        depth, stop = _held.get(path, (0, threading.Event()))
        if depth == 0:
            since = datetime.now(timezone.utc).isoformat(timespec="seconds")
            _acquire(store, path, run, since)
            thread = threading.Thread(target=_renew, args=(store, path, since, stop), daemon=True, name=f"lease {run}")
            thread.start()
        _held[path] = (depth + 1, stop)
    try:
        yield
    finally:
        with _lock:
            depth, stop = _held.pop(path)
            if depth > 1:
                _held[path] = (depth - 1, stop)
            else:
                stop.set()  # under the lock: a renewal is either done or will not write again
                _release(store, path)


def lease_state(store: Store, run: str) -> str:
    """What `score runs` says of a run's writer: "writing (holder, since ...)" while a live lease binds,
    "stopped without ending" when a lease is left that no live holder renews (a killed or crashed writer), else
    "idle" (the last writer ended and released it)."""
    lease = _read(store, store.path(run, LEASE))
    if lease is None:
        return "idle"
    if _live(lease):
        return f"writing ({lease['holder']}, since {lease.get('since', '?')})"
    return "stopped without ending"


def _record(store: Store, since: str) -> bytes:
    return json.dumps({"holder": _HOLDER, "since": since, "expires": time.time() + store.lease_seconds}).encode()


def _read(store: Store, path: str) -> dict | None:
    try:
        return json.loads(store.fs.cat_file(path))
    except FileNotFoundError:
        return None
    except ValueError:  # a torn or foreign file: treat as expired
        return {"holder": "?", "expires": 0}


def _live(lease: dict) -> bool:
    """Whether a lease still binds: not expired, and not held by a process of this host that is gone (a killed
    local run frees its run at once, not after `store.lease_seconds`)."""
    if lease["expires"] <= time.time():
        return False
    host, pid = (lease["holder"].split(":") + ["", ""])[:2]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)  # signal 0: does the process exist?
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _acquire(store: Store, path: str, run: str, since: str) -> None:
    current = _read(store, path)
    if current and current["holder"] != _HOLDER and _live(current):
        raise RunLocked(_busy(store, run, current))
    store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    store.fs.pipe_file(path, _record(store, since))
    time.sleep(0.2)  # a writer that started in the same instant has written by now
    mine = _read(store, path)
    if not mine or mine["holder"] != _HOLDER:
        raise RunLocked(_busy(store, run, mine or {"holder": "?", "expires": time.time()}))


def _busy(store: Store, run: str, lease: dict) -> str:
    left = max(0, round(lease["expires"] - time.time()))
    return (
        f"run {run!r} in {store.url} is being written by {lease['holder']} (host:pid:id, since "
        f"{lease.get('since', '?')}); wait for it to finish, or use another run name (--set run=...). If that process "
        f"is gone, its lease expires in {left} s ({store.display(run, LEASE)})"
    )


def _renew(store: Store, path: str, since: str, stop: threading.Event) -> None:
    while not stop.wait(store.lease_seconds / 3):
        with _lock:
            if stop.is_set():  # released meanwhile: never write the lease back
                return
            try:
                store.fs.pipe_file(path, _record(store, since))
            except OSError:  # a store hiccup: the next renewal tries again, well before expiry
                pass


def _release(store: Store, path: str) -> None:
    current = _read(store, path)
    if current and current["holder"] == _HOLDER:
        store.fs.rm_file(path)
