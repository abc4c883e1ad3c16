"""An fsspec store with atomic writes: every file is written under a temporary name and renamed. A reader asks
for a stage folder and gets an error unless its manifest is there; it then checks each file against its schema
constant (`score.store.schemas`). Where files go is `score.store.layout`'s; what a manifest holds is
`score.store.manifest`'s.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from score.config import StoreConfig
from score.store.layout import MANIFEST
from score.store.manifest import FileInfo, Manifest
from score.store.schemas import SCHEMAS, Artifact, ArtifactError, check_schema

log = logging.getLogger(__name__)

STREAM_BATCH_ROWS = (
    4096  # rows per batch of Store.iter_batches (on 100k score rows: as fast as 16k, 17 MiB less peak RSS)
)
STREAM_READ_BYTES = 1 << 20  # how much of a column chunk a streaming reader holds, and its fsspec read size


class StoreError(RuntimeError):
    """The store itself cannot be used (unreachable endpoint, bad credentials, unknown scheme)."""


def file_sha256(path, opener=open) -> str:
    """sha256 of a file, read in 1 MiB blocks (corpora and query files are fingerprinted by content; `opener` a
    store's `fs.open` for files in the store)."""
    h = hashlib.sha256()
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Store:
    """Reads and writes run artifacts under one root, through fsspec."""

    def __init__(self, cfg: StoreConfig):
        options = dict(cfg.storage_options)
        if cfg.root.startswith("s3://"):
            # fail in seconds, not minutes, when the endpoint is down
            options.setdefault(
                "config_kwargs", {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2}}
            )
        try:
            self.fs, root = fsspec.core.url_to_fs(cfg.root, **options)
        except (ImportError, ValueError) as e:
            raise StoreError(
                f"cannot open store {cfg.root!r}: {e}; check store.root and store.storage_options"
            ) from None
        self.root = root.rstrip("/")
        self.url = cfg.root.rstrip("/")
        self.remote = cfg.root.startswith("s3://")
        self.lease_seconds = cfg.lease_seconds  # score.store.lease
        self._verified: set[tuple[str, str]] = set()  # (folder, content fingerprint) whose files were hashed

    def check(self, write: bool = True) -> None:
        """Fail early with the fix when the store cannot be reached (or, with `write`, written: the read-only
        commands pass False and leave the store untouched)."""
        try:
            if not write:
                if self.fs.exists(self.root):
                    self.fs.ls(self.root)  # a listing proves the credentials
                return
            if self.remote:
                self._bucket_exists()  # a typo in its name must not make a new bucket
            self.fs.makedirs(self.root, exist_ok=True)
            probe = self.path(f".probe-{uuid.uuid4().hex[:8]}")
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except PermissionError as e:
            if not self.remote:
                raise StoreError(
                    f"store {self.url} is not writable here (permission denied); set store.root to a folder you can "
                    "write, or change its permissions"
                ) from None
            raise StoreError(
                f"store {self.url} refused access ({e}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
            ) from None
        except (FileNotFoundError, NotADirectoryError, FileExistsError) as e:
            if self.remote:  # s3fs says "Not Found" for a missing bucket, or for an endpoint that is not S3
                raise StoreError(
                    f"cannot use store {self.url}: not found (does the bucket exist, and is "
                    "store.storage_options.endpoint_url an S3 server?)"
                ) from None
            raise StoreError(
                f"cannot make the store folder {self.url} ({e.strerror or type(e).__name__}: a part of the path is a "
                "file, or cannot be made); set store.root to a folder you can write"
            ) from None
        except _transport_errors() as e:  # one line naming the store, not a botocore traceback
            raise StoreError(
                f"cannot use store {self.url}: {type(e).__name__}: {str(e)[:200]}; "
                f"check store.root, store.storage_options.endpoint_url and that the server is up"
            ) from None

    def _bucket_exists(self) -> None:
        bucket = self.root.split("/", 1)[0]
        try:
            self.fs.info(bucket)  # unlike exists(), lets a dead endpoint raise (the caller names it)
        except FileNotFoundError:
            raise StoreError(
                f"store {self.url}: bucket {bucket!r} does not exist; create it first (e.g. `aws s3 mb "
                f"s3://{bucket}`), or fix the bucket's name in store.root"
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

    def write_file(self, folder: str, name: str, local: Path) -> FileInfo:
        """Copy a local file (a checkpoint's safetensors, its JSON) into a stage folder, atomically."""
        data = local.read_bytes()
        self._put_atomic(self.path(folder, name), data)
        return FileInfo(rows=0, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    def local_folder(self, folder: str, cache: Path, version: str) -> Path:
        """A local path holding `folder`: itself on a local store, else a copy under `cache`, made once per
        `version` (the folder's content fingerprint, so a retrained folder is fetched again)."""
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        if "file" in protocols:
            return Path(self.path(folder))
        target = cache / version
        if not (target / ".complete").exists():
            target.mkdir(parents=True, exist_ok=True)
            self.fs.get(self.path(folder) + "/", str(target) + "/", recursive=True)
            (target / ".complete").touch()
        return target

    def copy_folder(self, src: str, dst: str) -> None:
        """A finished folder copied whole into `dst` (cleared first), its manifest last: a reader never sees a half
        copy as finished. Used where a folder is the same by construction (an ablation's shared round 0)."""
        manifest = self.finished(src, "finish it before copying it")
        self.clear(dst)
        for name in manifest.files:
            self.fs.makedirs(self.path(dst, name).rsplit("/", 1)[0], exist_ok=True)
            self.fs.copy(self.path(src, name), self.path(dst, name))
        self.write_manifest(dst, manifest)

    def write_manifest(self, folder: str, manifest: Manifest) -> None:
        self._put_atomic(self.path(folder, MANIFEST), manifest.to_json().encode())

    def clear(self, folder: str) -> None:
        """Remove a stage folder: manifest first, so it is invisible before anything else goes."""
        self._verified = {v for v in self._verified if v[0] != folder}
        manifest = self.path(folder, MANIFEST)
        if self.fs.exists(manifest):
            self.fs.rm_file(manifest)
        if self.fs.exists(self.path(folder)):
            self.fs.rm(self.path(folder), recursive=True)

    # ---- reading ------------------------------------------------------------------------------------
    def read_manifest(self, folder: str) -> Manifest | None:
        path = self.path(folder, MANIFEST)
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        try:
            return Manifest.from_json(data)
        except (ValueError, TypeError, AttributeError) as e:  # not JSON, or not a manifest's fields
            raise ArtifactError(
                f"{self.display(folder, MANIFEST)} is not a valid manifest ({e}); rerun its stage with --force"
            ) from None

    def verify(self, folder: str, manifest: Manifest) -> list[str]:
        """What in `folder` no longer matches `manifest`, one line each (empty: every file is as written): a file
        missing or of another size (one size query per file, every time), or with other bytes (a full sha256,
        once per folder and process: 0.12 s for the two rounds of `make run`, 113 MB, here)."""
        problems = []
        for name, info in sorted(manifest.files.items()):
            try:
                size = self.fs.size(self.path(folder, name))
            except FileNotFoundError:
                problems.append(f"{name} is missing")
                continue
            if size != info.bytes:
                problems.append(f"{name} has {size} bytes where its manifest says {info.bytes}")
        key = (folder, manifest.content_fingerprint())
        if problems or key in self._verified:
            return problems
        for name, info in sorted(manifest.files.items()):
            if file_sha256(self.path(folder, name), self.fs.open) != info.sha256:
                problems.append(f"{name} changed after its manifest was written (its sha256 differs)")
        if not problems:
            self._verified.add(key)
        return problems

    def read_table(self, folder: str, name: str) -> pa.Table:
        """Read a finished artifact; raise when its stage is unfinished, its bytes are not those its manifest
        lists, or its schema differs from the constant."""
        where, manifest = self._finished(folder, name)
        data = self.fs.cat_file(self.path(folder, name))
        if hashlib.sha256(data).hexdigest() != manifest.files[name].sha256:
            raise ArtifactError(f"{where} changed after its manifest was written; {self._redo_hint()}")
        table = pq.read_table(io.BytesIO(data))
        check_schema(table.schema, SCHEMAS[name], where)
        return table

    def read_rows(self, folder: str, artifact: Artifact) -> list:
        """A finished artifact as its typed rows (`artifact.row`), with the checks of `read_table`."""
        return [artifact.row(**r) for r in self.read_table(folder, artifact.file).to_pylist()]

    def iter_batches(
        self, folder: str, name: str, columns: list[str] | None = None, batch_rows: int = STREAM_BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """Stream a finished artifact in record batches of at most `batch_rows` rows, in file order, decoding only
        `columns` (all when None): memory stays near one batch however many rows the file holds.

        The checks of `read_table` (finished, listed, schema equal to the constant, plus the columns asked for)
        run here, before the first batch is asked for; the file is opened when iteration starts.
        """
        where, manifest = self._finished(folder, name)
        path = self.path(folder, name)
        if self.fs.size(path) != manifest.files[name].bytes:  # streamed, so not hashed: its size at least
            raise ArtifactError(f"{where} changed after its manifest was written; {self._redo_hint()}")
        with self.fs.open(path, "rb") as f:
            check_schema(pq.read_schema(f), SCHEMAS[name], where)
        unknown = [c for c in columns or [] if c not in SCHEMAS[name].names]
        if unknown:
            raise ArtifactError(f"{where}: no column(s) {unknown}; its columns are {SCHEMAS[name].names}")
        return self._batches(path, columns, batch_rows)

    def _batches(self, path: str, columns: list[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        # Bounded reads at every level: fsspec blocks of 1 MiB (s3fs would read ahead 50 MiB), column chunks read
        # through a 1 MiB buffer instead of whole and pre-buffered (a row group holds up to 1Mi rows), and no
        # decoding threads (each keeps its own allocator heap; one pass of statistics gains nothing from them).
        with self.fs.open(path, "rb", block_size=STREAM_READ_BYTES) as f:
            reader = pq.ParquetFile(f, pre_buffer=False, buffer_size=STREAM_READ_BYTES)
            yield from reader.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False)

    def finished(self, folder: str, hint: str) -> Manifest:
        """The manifest of a finished folder whose files are as it lists them (`verify`); raises, naming the
        folder and `hint` (what to run), when unfinished, and naming the damaged files when not intact."""
        manifest = self.read_manifest(folder)
        if manifest is None:
            raise ArtifactError(f"{self.display(folder)} is not finished; {hint}")
        damaged = self.verify(folder, manifest)
        if damaged:
            raise ArtifactError(f"{self.display(folder)}: {'; '.join(damaged)}; {self._redo_hint()}")
        return manifest

    def _redo_hint(self) -> str:
        return "nothing was read from it; `score run` redoes its stage and what follows (or `score stage ... --force`)"

    def _finished(self, folder: str, name: str) -> tuple[str, Manifest]:
        """The user-facing address of `name` and its folder's manifest, after checking that its stage finished
        and listed it."""
        manifest = self.read_manifest(folder)
        where = self.display(folder, name)
        if manifest is None:
            raise ArtifactError(f"{where} is not finished (no {MANIFEST} in its folder); run its stage first")
        if name not in manifest.files:
            raise ArtifactError(f"{where} is not listed in its manifest; rerun its stage with --force")
        return where, manifest

    def list_runs(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        # an S3 listing may hold the root's own "prefix/" marker object (SeaweedFS after check(), a folder made in
        # the AWS console): it is not a run
        paths = [p.rstrip("/") for p in self.fs.ls(self.root, detail=False)]
        return sorted(p.rsplit("/", 1)[1] for p in paths if p != self.root and self.fs.isdir(p))


def _transport_errors() -> tuple[type[BaseException], ...]:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return (OSError,)
    return (OSError, BotoCoreError, ClientError)
