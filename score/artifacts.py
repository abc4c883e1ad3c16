"""The contract between stages: one pyarrow schema per artifact, an fsspec store, atomic writes, manifests.

Layout under `store.root` (a local folder or s3://bucket/prefix):

    RUN/round-0003/generate/reports.parquet
    RUN/round-0003/generate/_manifest.json      <- written last; without it the folder does not exist

Every file is written under a temporary name and renamed. A reader asks for a stage folder and gets an
error unless its manifest is there; it then checks each file against its schema constant and raises,
naming the file and the column, on any mismatch.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from score.config import StoreConfig

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"

# ---- schemas: one constant per artifact, shared by writer, reader and tests --------------------------------

SPAN = pa.struct(
    [
        ("name", pa.string()),  # plan | report (later: rubric, score, ...)
        ("prompt", pa.string()),  # the exact rendered prompt the model continued
        ("text", pa.string()),
        ("token_ids", pa.list_(pa.int32())),  # what the model wrote: the only tokens that carry loss
        ("logprobs", pa.list_(pa.float32())),  # temperature-1 log-prob of each token at sampling time
        ("finish_reason", pa.string()),  # stop | length
    ]
)
SEARCH_CALL = pa.struct([("query", pa.string()), ("passage_ids", pa.list_(pa.string())), ("scores", pa.list_(pa.float32()))])
SOURCE = pa.struct(
    [("n", pa.int32()), ("passage_id", pa.string()), ("title", pa.string()), ("url", pa.string()), ("text", pa.string())]
)

REPORTS_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("query", pa.string(), nullable=False),
        pa.field("sample_idx", pa.int32(), nullable=False),  # 0..K-1 within the query's group
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("plan", pa.list_(pa.string())),  # sub-questions parsed from the plan span
        pa.field("plan_fallback", pa.bool_()),  # true when no sub-question parsed and the query itself was searched
        pa.field("searches", pa.list_(SEARCH_CALL)),
        pa.field("sources", pa.list_(SOURCE)),  # what the writer saw, numbered as it may cite them
        pa.field("report", pa.string()),
        pa.field("cited", pa.list_(pa.int32())),  # distinct valid [n] the report cites, in order of first use
        pa.field("finish_reason", pa.string()),  # of the report span
        pa.field("spans", pa.list_(SPAN)),
        pa.field("prompt_tokens", pa.int32()),
        pa.field("completion_tokens", pa.int32()),
        pa.field("checkpoint", pa.string()),  # weights that sampled: "base" or a checkpoint folder
        pa.field("seed", pa.int64()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"reports.parquet": REPORTS_SCHEMA}


class ArtifactError(RuntimeError):
    """A missing, unfinished or malformed artifact; the message names the file and what to do."""


class StoreError(RuntimeError):
    """The store itself cannot be used (unreachable endpoint, bad credentials, unknown scheme)."""


def round_dir(run: str, round_idx: int) -> str:
    return f"{run}/round-{round_idx:04d}"


@dataclass
class FileInfo:
    rows: int
    bytes: int
    sha256: str


class Store:
    """Reads and writes run artifacts under one root, through fsspec."""

    def __init__(self, cfg: StoreConfig):
        options = dict(cfg.storage_options)
        if cfg.root.startswith("s3://"):
            # fail in seconds, not minutes, when the endpoint is down
            options.setdefault("config_kwargs", {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2}})
        try:
            self.fs, root = fsspec.core.url_to_fs(cfg.root, **options)
        except (ImportError, ValueError) as e:
            raise StoreError(f"cannot open store {cfg.root!r}: {e}; check store.root and store.storage_options") from None
        self.root = root.rstrip("/")
        self.url = cfg.root.rstrip("/")
        self.remote = cfg.root.startswith("s3://")

    def check(self) -> None:
        """Fail early with the fix when the store cannot be reached or written."""
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            probe = self.path(f".probe-{uuid.uuid4().hex[:8]}")
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except PermissionError as e:
            raise StoreError(f"store {self.url} refused access ({e}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY") from None
        except _transport_errors() as e:  # one line naming the store, not a botocore traceback
            raise StoreError(
                f"cannot use store {self.url}: {type(e).__name__}: {str(e)[:200]}; "
                f"check store.root, store.storage_options.endpoint_url and that the server is up"
            ) from None

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *[p.strip("/") for p in parts]])

    def display(self, *parts: str) -> str:
        """A user-facing address (s3://... or the local path)."""
        return "/".join([self.url, *[p.strip("/") for p in parts]])

    # ---- writing ------------------------------------------------------------------------------------
    def _put_atomic(self, target: str, data: bytes) -> None:
        parent = target.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex[:8]}-{target.rsplit('/', 1)[1]}"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, target)  # a rename locally; on S3 a copy, which is why the manifest comes last

    def write_table(self, folder: str, name: str, table: pa.Table) -> FileInfo:
        schema = SCHEMAS[name]
        if not table.schema.equals(schema, check_metadata=False):
            table = table.cast(schema)  # raises on a real mismatch: the writer built the wrong thing
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        data = buf.getvalue()
        self._put_atomic(self.path(folder, name), data)
        return FileInfo(rows=table.num_rows, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    def write_manifest(self, folder: str, manifest: dict[str, Any]) -> None:
        self._put_atomic(self.path(folder, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True).encode())

    def clear(self, folder: str) -> None:
        """Remove a stage folder: manifest first, so it is invisible before anything else goes."""
        manifest = self.path(folder, MANIFEST)
        if self.fs.exists(manifest):
            self.fs.rm_file(manifest)
        if self.fs.exists(self.path(folder)):
            self.fs.rm(self.path(folder), recursive=True)

    # ---- reading ------------------------------------------------------------------------------------
    def read_manifest(self, folder: str) -> dict[str, Any] | None:
        path = self.path(folder, MANIFEST)
        try:
            return json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def read_table(self, folder: str, name: str) -> pa.Table:
        """Read a finished artifact; raise when its stage is unfinished or its schema differs from the constant."""
        manifest = self.read_manifest(folder)
        where = self.display(folder, name)
        if manifest is None:
            raise ArtifactError(f"{where} is not finished (no {MANIFEST} in its folder); run its stage first")
        if name not in manifest.get("files", {}):
            raise ArtifactError(f"{where} is not listed in its manifest; rerun its stage with --force")
        with self.fs.open(self.path(folder, name), "rb") as f:
            table = pq.read_table(f)
        check_schema(table.schema, SCHEMAS[name], where)
        return table

    def list_runs(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        return sorted(p.rsplit("/", 1)[1] for p in self.fs.ls(self.root, detail=False) if self.fs.isdir(p))


def _transport_errors() -> tuple[type[BaseException], ...]:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return (OSError,)
    return (OSError, BotoCoreError, ClientError)


def check_schema(actual: pa.Schema, expected: pa.Schema, where: str) -> None:
    for field in expected:
        if field.name not in actual.names:
            raise ArtifactError(f"{where}: column {field.name!r} is missing (expected {field.type})")
        got = actual.field(field.name).type
        if got != field.type:
            raise ArtifactError(f"{where}: column {field.name!r} has type {got}, expected {field.type}")
    extra = [n for n in actual.names if n not in expected.names]
    if extra:
        raise ArtifactError(f"{where}: unexpected column(s) {extra}; the file was written by another schema version")
