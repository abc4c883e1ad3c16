"""Sharded stages (`generate.shards`, `evaluate.shards`): each shard behind its own manifest, the stage closed over
them; a stage stopped after some shards redoes only the others; the closed stage reads like a whole one."""

from __future__ import annotations

import os

import pytest

from score.pipeline import EVALUATE, EVOLVE, GENERATE, TRAIN, GenerateStats
from score.queries import round_queries
from score.runner import run_shard, run_stage
from score.store.layout import shard_dir, stage_dir
from score.store.schemas import REPORTS, RUBRICS, SCORES, SOLVER_REWARDS, SUMMARY, ArtifactError


def sharded(toy_workspace, n: int = 2):
    cfg = toy_workspace.cfg.model_copy(deep=True)
    cfg.data.queries_per_round = 3
    cfg.generate.shards = n
    cfg.evaluate.shards = n
    toy_workspace.cfg = cfg
    return toy_workspace


def started(ws, spec, round_idx: int, n: int) -> list[str]:
    folders = [shard_dir(ws.cfg.run, round_idx, spec.folder, i, n) for i in range(n)]
    return [ws.store.read_manifest(f).started_at for f in folders]


def test_a_sharded_round_closes_over_its_shards_and_reads_like_a_whole_one(toy_workspace):
    ws = sharded(toy_workspace, 2)
    for spec in (GENERATE, EVALUATE, EVOLVE, TRAIN):
        run_stage(ws, spec, 0)
    reports = ws.store.read_table(stage_dir("toy", 0, "generate"), REPORTS.file).to_pylist()
    parts = [ws.store.read_table(shard_dir("toy", 0, "generate", i, 2), REPORTS.file).to_pylist() for i in (0, 1)]
    assert [len({r["query_id"] for r in p}) for p in parts] == [2, 1]  # queries 0 and 2, then 1
    assert sorted(r["trajectory_id"] for r in reports) == sorted(r["trajectory_id"] for p in parts for r in p)
    queries = [q.id for q in round_queries(ws.queries, 3, 0, ws.cfg.seed)]
    assert list(dict.fromkeys(r["query_id"] for r in reports)) == queries  # the round's order, not the shards'
    stats = ws.store.read_manifest(stage_dir("toy", 0, "generate")).stats_as(GenerateStats)
    assert (stats.queries, stats.reports) == (3, len(reports))
    assert stats.completion_tokens == sum(
        ws.store.read_manifest(shard_dir("toy", 0, "generate", i, 2)).stats["completion_tokens"] for i in (0, 1)
    )
    evaluate = stage_dir("toy", 0, "evaluate")
    scores = ws.store.read_table(evaluate, SCORES.file).to_pylist()
    assert list(dict.fromkeys(r["query_id"] for r in scores)) == queries  # the order the statistics read
    rewards = ws.store.read_table(evaluate, SOLVER_REWARDS.file).to_pylist()
    assert sorted(r["trajectory_id"] for r in rewards) == sorted(r["trajectory_id"] for r in reports)
    assert len(ws.store.read_table(evaluate, RUBRICS.file)) == 3 * ws.cfg.evaluate.rubrics_per_query
    assert ws.store.read_table(evaluate, SUMMARY.file).to_pylist()[0]["reports"] == len(reports)


def test_a_stage_stopped_after_one_shard_redoes_only_the_other(toy_workspace):
    ws = sharded(toy_workspace, 2)
    run_shard(ws, GENERATE, 0, 0)  # a worker finished shard 0, then everything stopped
    assert ws.store.read_manifest(stage_dir("toy", 0, "generate")) is None  # readers see nothing yet
    with pytest.raises(ArtifactError, match="run round 0's generate-reports first"):
        run_stage(ws, EVALUATE, 0)
    first = ws.store.read_manifest(shard_dir("toy", 0, "generate", 0, 2)).started_at
    run_stage(ws, GENERATE, 0)
    after = started(ws, GENERATE, 0, 2)
    assert after[0] == first and after[1] > first  # shard 0 kept, shard 1 done now
    run_stage(ws, GENERATE, 0, force=True)  # force redoes every shard
    forced = started(ws, GENERATE, 0, 2)
    assert all(s > after[1] for s in forced)
    ws.store.clear(shard_dir("toy", 0, "generate", 1, 2))
    assert run_stage(ws, GENERATE, 0).skipped  # a closed stage needs no shard again
    assert ws.store.read_manifest(shard_dir("toy", 0, "generate", 1, 2)) is None


def test_one_worker_and_shards_run_apart_write_the_same_artifacts(toy_workspace, tmp_path):
    from conftest import ToyBackend

    from score.workspace import Workspace

    ws = sharded(toy_workspace, 2)
    run_stage(ws, GENERATE, 0)
    run_stage(ws, EVALUATE, 0)
    other_cfg = ws.cfg.model_copy(deep=True)
    other_cfg.store.root = str(tmp_path / "other")
    other = Workspace(other_cfg, cache=tmp_path / "cache2", make_backend=ToyBackend)
    for spec in (GENERATE, EVALUATE):
        for i in (1, 0):  # the shards one at a time, in another order, then the close
            run_shard(other, spec, 0, i)
        run_stage(other, spec, 0)
    for spec in (GENERATE, EVALUATE):
        a = ws.store.read_manifest(stage_dir("toy", 0, spec.folder))
        b = other.store.read_manifest(stage_dir("toy", 0, spec.folder))
        assert a.content_fingerprint() == b.content_fingerprint()


def test_a_shard_that_does_not_exist_names_the_count(toy_workspace):
    ws = sharded(toy_workspace, 2)
    with pytest.raises(ValueError, match=r"runs as 2 shard\(s\) \(generate.shards\); there is no shard 2"):
        run_shard(ws, GENERATE, 0, 2)
    with pytest.raises(ValueError, match="does not shard"):
        run_shard(ws, TRAIN, 0, 0)


def test_a_worker_writing_for_a_holder_that_lost_the_run_writes_nothing(toy_workspace):
    from score.store.lease import RunLocked

    ws = sharded(toy_workspace, 2)
    with pytest.raises(RunLocked, match="writes run 'toy' for elsewhere:1:gone, which no longer holds its lease"):
        run_shard(ws, GENERATE, 0, 0, holder="elsewhere:1:gone")
    assert ws.store.read_manifest(shard_dir("toy", 0, "generate", 0, 2)) is None


def test_pool_workers_each_take_their_own_device_and_too_many_gpu_workers_are_refused(tmp_path, monkeypatch):
    """`pin` as each worker's initializer: the first free device, seen alone; the slow S3 test runs it in two real
    process workers (each shard's manifest names its device)."""
    from score.config import ConfigError
    from score.models import devices

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert devices.visible_devices() == ["0", "1"]
    held = []  # each worker process holds its lock for its life
    for expected in ("0", "1", "0,1"):  # the third worker finds none free: it keeps what the round process saw
        monkeypatch.setattr(devices, "_held", None)  # a fresh worker process (restored after the test)
        monkeypatch.setattr(devices, "_pinned", None)
        devices.pin(["0", "1"], str(tmp_path))
        held.append(devices._held)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # Prefect gives each task the round process's environment
        devices.keep_pinned()
        assert os.environ["CUDA_VISIBLE_DEVICES"] == expected
    devices.check_workers(2, ["0", "1"], needed=True)
    devices.check_workers(4, [], needed=False)  # the model samples on the CPU: any number of workers
    with pytest.raises(ConfigError, match="4 workers sample on GPUs but 2 device.*run with --workers 2"):
        devices.check_workers(4, ["0", "1"], needed=True)
    assert devices.on_gpu("vllm", "cpu") and devices.on_gpu("transformers", "cuda:1")
    assert not devices.on_gpu("transformers", "cpu")
