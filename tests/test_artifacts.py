import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from score.config import StoreConfig
from score.store.layout import MANIFEST
from score.store.manifest import Manifest
from score.store.schemas import REPORTS_SCHEMA, ArtifactError
from score.store.store import Store, StoreError
from tests.conftest import list_as_written


def toy_reports(n: int = 2) -> pa.Table:
    row = {
        "round": 0,
        "query_id": "q0",
        "query": "q?",
        "sample_idx": 0,
        "trajectory_id": "t",
        "plan": ["a"],
        "plan_fallback": False,
        "searches": [{"query": "a", "passage_ids": ["p1"], "scores": [1.0]}],
        "sources": [{"n": 1, "passage_id": "p1", "title": "T", "url": "u", "text": "x"}],
        "report": "r [1]",
        "cited": [1],
        "finish_reason": "stop",
        "spans": [
            {
                "name": "report",
                "prompt": "p",
                "text": "r",
                "token_ids": [1, 2],
                "logprobs": [-0.1, -0.2],
                "finish_reason": "stop",
            }
        ],
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "checkpoint": "base",
        "seed": 1,
    }
    return pa.Table.from_pylist([{**row, "sample_idx": i} for i in range(n)], schema=REPORTS_SCHEMA)


def test_round_trip_behind_a_manifest(tmp_path):
    store = Store(StoreConfig(root=str(tmp_path)))
    info = store.write_table("run/round-0000/generate", "reports.parquet", toy_reports(3))
    with pytest.raises(ArtifactError, match="not finished"):  # no manifest yet: invisible
        store.read_table("run/round-0000/generate", "reports.parquet")
    store.write_manifest(
        "run/round-0000/generate", Manifest(stage="generate-reports", fingerprint="f", files={"reports.parquet": info})
    )
    table = store.read_table("run/round-0000/generate", "reports.parquet")
    assert table.num_rows == 3 and info.rows == 3 and len(info.sha256) == 64
    leftovers = [p.name for p in (tmp_path / "run/round-0000/generate").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []


def test_reader_names_file_and_column_on_schema_mismatch(tmp_path):
    store = Store(StoreConfig(root=str(tmp_path)))
    folder = tmp_path / "run/round-0000/generate"
    folder.mkdir(parents=True)
    pq.write_table(toy_reports().drop_columns(["cited"]), folder / "reports.parquet")
    (folder / MANIFEST).write_text(json.dumps({"files": {"reports.parquet": {"rows": 2, "bytes": 0, "sha256": ""}}}))
    with pytest.raises(ArtifactError, match=r"reports.parquet changed after its manifest was written"):
        store.read_table("run/round-0000/generate", "reports.parquet")
    list_as_written(folder, "reports.parquet")  # an older writer's file, listed as it is: the schema check speaks
    with pytest.raises(ArtifactError, match=r"reports.parquet: column 'cited' is missing"):
        store.read_table("run/round-0000/generate", "reports.parquet")
    pq.write_table(toy_reports().set_column(0, "round", pa.array(["0", "0"])), folder / "reports.parquet")
    list_as_written(folder, "reports.parquet")
    with pytest.raises(ArtifactError, match=r"column 'round' has type string"):
        store.read_table("run/round-0000/generate", "reports.parquet")


def test_clear_removes_manifest_and_files(tmp_path):
    store = Store(StoreConfig(root=str(tmp_path)))
    info = store.write_table("r/round-0000/generate", "reports.parquet", toy_reports())
    store.write_manifest(
        "r/round-0000/generate", Manifest(stage="generate-reports", fingerprint="f", files={"reports.parquet": info})
    )
    store.clear("r/round-0000/generate")
    assert store.read_manifest("r/round-0000/generate") is None
    assert not (tmp_path / "r/round-0000/generate").exists()


def test_unreachable_s3_endpoint_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    store = Store(StoreConfig(root="s3://bucket/prefix", storage_options={"endpoint_url": "http://127.0.0.1:9"}))
    with pytest.raises(StoreError, match="cannot use store s3://bucket/prefix.*endpoint_url"):
        store.check()


def test_typed_rows_round_trip_through_the_store(tmp_path):
    """A stage may write an artifact's typed rows (its frozen dataclass) and read them back as such; the file is the
    one its schema describes, and a dict row writes the same bytes."""
    from dataclasses import replace

    from score.store.manifest import FolderWriter
    from score.store.schemas import SUMMARY, SummaryRow

    store = Store(StoreConfig(root=str(tmp_path)))
    row = replace(SummaryRow(), round=3, reward_mean=0.25, active_dimensions=["insight"])
    typed, plain = FolderWriter(store, "r/typed"), FolderWriter(store, "r/plain")
    typed.rows(SUMMARY.file, [row])
    plain.rows(SUMMARY.file, [vars(row)])
    for folder, writer in (("r/typed", typed), ("r/plain", plain)):
        store.write_manifest(folder, Manifest(stage="self-evaluate", fingerprint="f", files=writer.files))
    assert typed.files[SUMMARY.file].sha256 == plain.files[SUMMARY.file].sha256
    [back] = store.read_rows("r/typed", SUMMARY)
    assert back == row and isinstance(back, SummaryRow)
