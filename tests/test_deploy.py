"""prefect.yaml for real: a Prefect server on loopback, a process work pool, `prefect deploy`, a worker, and a
one-stage run triggered with `prefect deployment run` that completes and writes its stage folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the Prefect server exited"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"no Prefect server at {url} after {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_deploy_and_run_one_stage_through_a_server_and_a_worker(tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_UI_ENABLED": "false",
        "SCORE_REPO": str(ROOT),
    }
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = {**env, "PREFECT_API_URL": api}
    worker = None
    try:
        _wait_healthy(api, server)

        def prefect(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
            done = subprocess.run(
                [PREFECT, *args], cwd=ROOT, env=client, capture_output=True, text=True, timeout=timeout
            )
            assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            return done

        prefect("work-pool", "create", "score-process", "--type", "process")
        prefect("--no-prompt", "deploy", "--all")
        listed = prefect("deployment", "ls").stdout
        assert "score-stage/one-stage" in listed and "score-campaign/nightly" in listed
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "score-process"],
            cwd=ROOT,
            env=client,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        store = tmp_path / "store"
        params = {
            "config": "configs/ci.yaml",
            "round_idx": 0,
            "stage": "generate-reports",
            "force": True,
            "overrides": [f"store.root={store}"],
        }
        run = prefect(
            "deployment", "run", "score-stage/one-stage", "--params", json.dumps(params), "--watch", timeout=900
        )
        assert "Completed" in run.stdout + run.stderr, run.stdout[-2000:]
        manifest = json.loads((store / "ci" / "round-0000" / "generate" / "_manifest.json").read_text())
        assert manifest["stage"] == "generate-reports" and manifest["files"]["reports.parquet"]["rows"] == 4
        assert not (store / "ci" / "round-0000" / "evaluate").exists()  # only the stage asked for
    finally:
        if worker is not None:
            _stop(worker)
        _stop(server)
