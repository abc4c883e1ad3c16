"""Run stages behind manifests, from their declared contracts (`score.pipeline`).

This is where resume lives (not in Prefect's cache, which cannot see helper code or data): a stage's
fingerprint hashes its name, the config it declares and the fingerprints of its declared inputs (the
content of the artifacts it reads, the queries file, the corpus, the policy weights, the harness). A stage
whose manifest holds that fingerprint is skipped; otherwise its folder is cleared and redone.

A stage computes from a `StageContext`: its declared config only (a `ConfigView`), its declared inputs only,
and writes only its declared outputs; the runner checks all of it and writes the manifest last.

A sharded stage (`StageSpec.shards`, e.g. generate.shards: 2) runs as shards behind their own manifests
(`run_shard`: a worker's share, fingerprint = the stage's + the shard's index and count), then a closing step over
them behind the stage's manifest; the stage's readers see nothing until it closes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from score.checkpoints import Policy, base_policy
from score.config import ConfigView, launcher_command
from score.history import alarm_for_round, harness_for_round, policy_for_round
from score.pipeline import REWARDS_SEAM, StageSpec, derive_seed, stage
from score.progress import key_values
from score.store.layout import CHECKPOINT, shard_dir, stage_dir
from score.store.lease import holder as lease_holder
from score.store.lease import holding
from score.store.manifest import FolderWriter, Manifest, Outcome, behind_manifest, is_done
from score.store.schemas import Artifact, ArtifactError

if TYPE_CHECKING:
    from score.harness import Alarm, Harness
    from score.queries import Query
    from score.search.base import SearchBackend
    from score.workspace import Workspace

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class StageContext:
    """What a stage computes from: its declared config, inputs and resources, and a writer for its outputs."""

    spec: StageSpec
    ws: Workspace  # seen through the stage's ConfigView
    round: int
    writer: FolderWriter
    producers: dict[str, StageSpec]  # artifact file -> the stage whose folder it is read from this round
    resources: dict[str, Any] = field(default_factory=dict)
    shard: tuple[int, int] = (0, 1)  # (index, count): this shard's share of the round; (0, 1): all of it
    shards: int = 1  # how many shards the stage runs as (the closing step reads them all)

    @property
    def cfg(self) -> Any:
        return self.ws.cfg

    @cached_property
    def seed(self) -> int:
        index, count = self.shard
        if count > 1:  # each shard its own stream
            return derive_seed(self.cfg.seed, self.round, f"{self.spec.name}/{index}-of-{count}")
        return derive_seed(self.cfg.seed, self.round, self.spec.name)

    def mine(self, items: list[T]) -> list[T]:
        """This shard's share of `items` (every n-th, from its index); all of them when the stage runs whole."""
        index, count = self.shard
        return items[index::count]

    def read_shards(self, artifact: Artifact) -> pa.Table:
        """The closing step's read: `artifact` from every shard of this stage, concatenated in shard order."""
        return pa.concat_tables([self.ws.store.read_table(f, artifact.file) for f in self._shard_folders()])

    def shard_manifests(self) -> list[Manifest]:
        return [self.ws.store.finished(f, "run the stage's shards first") for f in self._shard_folders()]

    def _shard_folders(self) -> list[str]:
        if self.shards == 1:
            raise ArtifactError(f"stage {self.spec.name} read its shards, but it runs whole")
        return [shard_dir(self.cfg.run, self.round, self.spec.folder, i, self.shards) for i in range(self.shards)]

    def read(self, artifact: Artifact, columns: list[str] | None = None) -> pa.Table:
        if artifact.file not in self.producers:
            raise ArtifactError(f"stage {self.spec.name} read {artifact.file}, which its contract does not declare")
        table = self.ws.store.read_table(
            stage_dir(self.cfg.run, self.round, self.producers[artifact.file].folder), artifact.file
        )
        return table.select(columns) if columns else table

    def write(self, artifact: Artifact, rows: list) -> None:
        """Write the artifact's rows (dicts, or its typed rows); the contract must declare it."""
        if artifact not in self.spec.writes:
            raise ArtifactError(f"stage {self.spec.name} wrote {artifact.file}, which its contract does not declare")
        self.writer.rows(artifact.file, rows)

    def write_checkpoint(self, folder: Path) -> None:
        """Copy a local checkpoint folder into the stage's `checkpoint/` (the contract must declare one)."""
        if not self.spec.checkpoint:
            raise ArtifactError(f"stage {self.spec.name} wrote a checkpoint, which its contract does not declare")
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.writer.file(f"{CHECKPOINT}/{path.relative_to(folder).as_posix()}", path)

    def _resource(self, name: str) -> Any:
        if name not in self.resources:
            raise ArtifactError(f"stage {self.spec.name} used the {name}, which its contract does not declare")
        return self.resources[name]

    @property
    def policy(self) -> Policy:
        return self._resource("policy")

    @property
    def judge(self) -> Policy:
        """The weights that evaluate: the policy, or the base model frozen (harness.judge: base)."""
        return self._resource("judge")

    @property
    def harness(self) -> Harness:
        return self._resource("harness")

    @property
    def alarm(self) -> Alarm | None:
        """What the judge-hacking alarm reads (score.history.alarm_for_round); None when off or not yet possible."""
        return self._resource("heldout")

    @property
    def queries(self) -> list[Query]:
        return self._resource("queries")

    @property
    def search(self) -> SearchBackend:
        return self._resource("corpus")


def _resources(ws: Workspace, spec: StageSpec, round_idx: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The declared resources of a stage, and their fingerprints."""
    values, fingerprints = {}, {}
    for name in spec.uses:
        if name == "queries":
            values[name], fingerprints[name] = ws.queries, ws.queries_fingerprint
        elif name == "corpus":
            values[name], fingerprints[name] = ws.search, ws.search.fingerprint
        elif name == "policy" or (name == "judge" and ws.cfg.harness.judge == "policy"):
            values[name] = policy_for_round(ws, round_idx)
            fingerprints[name] = values[name].fingerprint
        elif name == "judge":  # harness.judge base: frozen, whatever the round (the static arm of score ablate)
            values[name] = base_policy(ws.cfg.model)
            fingerprints[name] = values[name].fingerprint
        elif name == "harness":
            values[name], fingerprints[name] = harness_for_round(ws, round_idx)
        elif name == "heldout":
            values[name], fingerprints[name] = alarm_for_round(ws, round_idx)
    return values, fingerprints


def _producers(spec: StageSpec, sources: dict[str, StageSpec]) -> dict[str, StageSpec]:
    """Artifact file -> the stage it is read from: the declared producer, or the stand-in for its seam."""
    out = {}
    for read in spec.reads:
        producer = sources.get(read.seam) if read.seam else None
        if producer is not None and read.artifact not in producer.writes:
            raise ArtifactError(
                f"{producer.name} cannot stand in for {read.stage}: it does not write {read.artifact.file}"
            )
        out[read.artifact.file] = producer or stage(read.stage)
    return out


def stage_fingerprint(spec: StageSpec, config: str, inputs: dict[str, str]) -> str:
    """What decides whether a stage is done: its name, its declared config's fingerprint, its inputs'."""
    blob = json.dumps({"stage": spec.name, "config": config, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class _Prepared:
    """A stage of a round, ready to run: its manifest's head (fingerprint and inputs), its config view, the
    folders it reads from and its resources."""

    spec: StageSpec
    meta: Manifest
    view: Workspace
    producers: dict[str, StageSpec]
    resources: dict[str, Any]


def _prepare(ws: Workspace, spec: StageSpec, round_idx: int, sources: dict[str, StageSpec] | None) -> _Prepared:
    if round_idx < 0:
        raise ValueError(f"round must be >= 0, got {round_idx}")
    unknown = set(sources or {}) - {REWARDS_SEAM}
    if unknown:
        raise ValueError(f"unknown seam(s) {sorted(unknown)}; the seams are: {REWARDS_SEAM}")
    producers = _producers(spec, sources or {})
    inputs = {}
    for producer in dict.fromkeys(producers.values()):  # the content of every upstream folder read
        folder = stage_dir(ws.cfg.run, round_idx, producer.folder)
        inputs[producer.name] = ws.store.finished(
            folder, f"run round {round_idx}'s {producer.name} first"
        ).content_fingerprint()
    resources, fingerprints = _resources(ws, spec, round_idx)
    inputs.update(fingerprints)
    config = ws.cfg.section_fingerprint(*spec.config)
    meta = Manifest(
        stage=spec.name,
        run=ws.cfg.run,
        round=round_idx,
        fingerprint=stage_fingerprint(spec, config, inputs),
        files={},
        config_fingerprint=config,
        config=ws.cfg.dump(*spec.config),
        inputs=inputs,
    )
    view = ws.restricted(ConfigView(ws.cfg, spec.config, f"stage {spec.name}"))
    return _Prepared(spec, meta, view, producers, resources)


def _work(p: _Prepared, round_idx: int, impl: str, writes: tuple[Artifact, ...], shard: tuple[int, int], shards: int):
    """The work behind a manifest: call `impl` on a StageContext, then check it wrote all of `writes`."""
    module, function = impl.split(":")

    def work(writer: FolderWriter):
        ctx = StageContext(p.spec, p.view, round_idx, writer, p.producers, p.resources, shard, shards)
        stats = getattr(importlib.import_module(module), function)(ctx)
        missing = [a.file for a in writes if a.file not in writer.files]
        if writer.enabled and missing:
            raise ArtifactError(f"stage {p.spec.name} did not write {missing}, which its contract declares")
        return stats

    return work


def _run_shard(ws: Workspace, p: _Prepared, round_idx: int, index: int, force: bool) -> Outcome:
    spec, n = p.spec, p.spec.shard_count(ws.cfg)
    if not 0 <= index < n:
        raise ValueError(f"{spec.name} runs as {n} shard(s) ({spec.shards.count}); there is no shard {index}")
    meta = replace(
        p.meta,
        stage=f"{spec.name} shard {index} of {n}",
        fingerprint=hashlib.sha256(f"{p.meta.fingerprint}/{index}-of-{n}".encode()).hexdigest()[:16],
    )
    folder = shard_dir(ws.cfg.run, round_idx, spec.folder, index, n)
    work = _work(p, round_idx, spec.shards.impl, spec.shards.writes, (index, n), n)
    outcome = behind_manifest(ws.store, folder, meta, work, force=force)
    if not outcome.skipped:
        log.info("round %d %s shard %d of %d: done in %.0f s", round_idx, spec.name, index, n, outcome.manifest.seconds)
    return outcome


def run_shard(
    ws: Workspace, name: str | StageSpec, round_idx: int, index: int, force: bool = False, holder: str | None = None
) -> Outcome:
    """Run shard `index` of a sharded stage behind its own manifest (a worker's share; `run_stage` closes the
    stage over its shards). `holder`: the lease holder (`score.store.lease.holder()`) this worker writes for, e.g. the
    round flow that dispatched it; without one the worker takes the run's lease itself."""
    spec = name if isinstance(name, StageSpec) else stage(name)
    if spec.shards is None:
        raise ValueError(f"stage {spec.name} does not shard; the sharded stages: generate-reports, self-evaluate")
    p = _prepare(ws, spec, round_idx, None)
    with holding(ws.store, ws.cfg.run, on_behalf_of=holder):
        return _run_shard(ws, p, round_idx, index, force)


def run_stage(
    ws: Workspace,
    name: str | StageSpec,
    round_idx: int,
    force: bool = False,
    sources: dict[str, StageSpec] | None = None,
    redo_shards: bool | None = None,
    holder: str | None = None,
) -> Outcome:
    """Run one stage of one round behind its manifest. `sources` maps a seam (`pipeline.REWARDS_SEAM`) to a
    stage that stands in for the declared producer of its reads (the learning check's known reward).

    A sharded stage (`StageSpec.shards`, n > 1) runs its unfinished shards here, one after another, then closes
    over them; workers that ran shards before (`run_shard`) leave only the close. `redo_shards` (default: `force`)
    redoes finished shards too. The train stage with `campaign.train_launcher` runs under that launcher.

    Parameters: the stage and round, `force`, `sources`, `redo_shards`, and `holder`: the lease holder this process
    writes for (a launched train stage writes for the round that launched it)."""
    spec = name if isinstance(name, StageSpec) else stage(name)
    p = _prepare(ws, spec, round_idx, sources)
    n = spec.shard_count(ws.cfg)
    folder = stage_dir(ws.cfg.run, round_idx, spec.folder)
    with holding(ws.store, ws.cfg.run, on_behalf_of=holder):  # one writer per run
        if n > 1 and (force or not is_done(ws.store, folder, p.meta.fingerprint)):  # closed: no shard needed
            redo = force if redo_shards is None else redo_shards
            for index in range(n):
                _run_shard(ws, p, round_idx, index, redo)
        if spec.name == "train" and ws.cfg.campaign.train_launcher and not sources:
            return launched(ws, p, round_idx, force)
        work = _work(p, round_idx, spec.impl, spec.writes, (0, 1), n)
        outcome = behind_manifest(ws.store, folder, p.meta, work, force=force)
    if not outcome.skipped:  # a skip is logged once, by behind_manifest
        log.info("round %d %s: done · %s", round_idx, spec.name, key_values(outcome.manifest.stats))
    return outcome


def launched(ws: Workspace, p: _Prepared, round_idx: int, force: bool) -> Outcome:
    """`p`'s stage under `campaign.train_launcher` (e.g. `accelerate launch ...`, `torchrun ...`): each launched
    process runs it with `--no-flow` on this config (less the launcher), writing for this process's lease; this
    process's engines are released first (the devices are the launch's). Its manifest is read back after exit 0."""
    folder = stage_dir(ws.cfg.run, round_idx, p.spec.folder)
    if not force and is_done(ws.store, folder, p.meta.fingerprint):
        log.info("%s: done already (manifest matches), skipped", ws.store.display(folder))
        return Outcome(ws.store.display(folder), True, ws.store.read_manifest(folder))
    ws.release()
    launcher = ws.cfg.campaign.train_launcher
    cfg = ws.cfg.model_copy(update={"campaign": ws.cfg.campaign.model_copy(update={"train_launcher": None})})
    with tempfile.TemporaryDirectory(prefix="score-launch-") as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(cfg.model_dump_json())
        stage_args = ["stage", p.spec.name, "--round", str(round_idx), "--no-flow", "--holder", lease_holder()]
        cmd = [*launcher_command(launcher), "-m", "score.cli", *stage_args, "-c", str(config)]
        cmd += ["--force"] if force else []
        log.info("round %d %s: launched: %s", round_idx, p.spec.name, shlex.join(cmd))
        code = subprocess.run(cmd).returncode
    if code != 0:
        raise RuntimeError(
            f"round {round_idx} {p.spec.name} under {launcher!r} exited {code}: its processes' output is above; "
            "rerun the round (finished stages skip)"
        )
    manifest = ws.store.read_manifest(folder)
    if manifest is None or manifest.fingerprint != p.meta.fingerprint:
        raise RuntimeError(f"round {round_idx} {p.spec.name}: the launch exited 0 but left no manifest in {folder}")
    return Outcome(ws.store.display(folder), False, manifest)


def stage_folder(ws: Workspace, name: str, round_idx: int) -> str:
    """The store folder of stage `name` in round `round_idx` of the workspace's run."""
    return stage_dir(ws.cfg.run, round_idx, stage(name).folder)
