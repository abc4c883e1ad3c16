"""Prefect settings the project runs with, and clean-up of temporary servers a killed run left behind.

Import this module before `prefect`: the environment must be set before Prefect reads its settings.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "score",  # the library's logs show in the Prefect UI
}
for key, value in DEFAULTS.items():
    os.environ.setdefault(key, value)
if logging.getLogger("score").level == logging.NOTSET:  # a worker's flow run too: the library's INFO lines (each
    logging.getLogger("score").setLevel(logging.INFO)  # stage's numbers, progress every 30 s) are the UI's view


def reap_orphaned_servers() -> int:
    """Stop temporary Prefect API servers whose parent died (a SIGKILLed run), for this PREFECT_HOME only.

    With no server configured, every process that runs a flow starts its own API server as a child; a
    SIGKILL of the parent leaves that child running (and holding the SQLite database) forever.
    """
    home = os.environ.get("PREFECT_HOME", str(Path.home() / ".prefect"))
    reaped = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"prefect.server.api.server:create_app" not in cmdline:
                continue
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
        except (OSError, ValueError, IndexError):  # the process ended while we looked, or is not ours to read
            continue
        ours = environ.get(b"PREFECT_HOME", str(Path.home() / ".prefect").encode()).decode() == home
        if ours and environ.get(b"PREFECT__SERVER_EPHEMERAL") == b"1" and _orphaned(ppid):
            os.kill(int(proc.name), signal.SIGTERM)
            log.info("stopped orphaned temporary Prefect server (pid %s)", proc.name)
            reaped += 1
    return reaped


def _orphaned(ppid: int) -> bool:
    """The server's parent is gone: it was re-parented to init, or to a subreaper that is not Python."""
    if ppid == 1:
        return True
    try:
        return b"python" not in Path(f"/proc/{ppid}/cmdline").read_bytes()
    except OSError:
        return True
