"""The layout of a run under the store root: the one module that spells a path.

    RUN/round-0003/generate/reports.parquet         a stage folder (its name: the stage's `folder`)
    RUN/round-0003/generate/_manifest.json          written last; without it the folder does not exist
    RUN/round-0003/shards/evaluate/01-of-02/        shard 1 of 2 of a sharded stage, behind its own manifest
    RUN/round-0003/train/checkpoint/                the checkpoint round 4 samples with
    RUN/benchmark/round-0003/benchmark.parquet      `score eval` of round 3's checkpoint
    RUN/benchmark/reports/base/reports.parquet      the reports a benchmark evaluation judged
    RUN/plots/                                       the run's plots and index.html (score report, every round's flow)
    RUN/plots-vs-BASELINE/                           the same beside a second run (score report --baseline, ablate)

File names inside a folder are the artifacts' own (`score.store.schemas`); everything else is here.
"""

from __future__ import annotations

import re

from score.store.schemas import ArtifactError

MANIFEST = "_manifest.json"
CHECKPOINT = "checkpoint"  # the train stage's subfolder holding the weights
_ROUND = re.compile(r"round-(\d{4})$")


def round_dir(run: str, round_idx: int) -> str:
    """
    >>> round_dir("default", 3)
    'default/round-0003'
    """
    return f"{run}/round-{round_idx:04d}"


def round_of(folder_name: str) -> int | None:
    """The round number of a round folder's name, None for any other name.

    >>> round_of("round-0012"), round_of("benchmark")
    (12, None)
    """
    m = _ROUND.match(folder_name)
    return int(m.group(1)) if m else None


def stage_dir(run: str, round_idx: int, folder: str) -> str:
    """A stage's folder in a round; `folder` is the stage's declared folder (`StageSpec.folder`)."""
    return f"{round_dir(run, round_idx)}/{folder}"


def shard_dir(run: str, round_idx: int, folder: str, index: int, count: int) -> str:
    """Shard `index` of `count` of a stage (its folder `folder`) in a round.

    >>> shard_dir("default", 3, "generate", 1, 2)
    'default/round-0003/shards/generate/01-of-02'
    """
    return f"{round_dir(run, round_idx)}/shards/{folder}/{index:02d}-of-{count:02d}"


def checkpoint_dir(run: str, round_idx: int, train_folder: str) -> str:
    """The checkpoint round `round_idx`'s train stage wrote."""
    return f"{stage_dir(run, round_idx, train_folder)}/{CHECKPOINT}"


def benchmark_dir(run: str, label: str) -> str:
    """`score eval`'s outputs for one checkpoint label (base, round-0003, folder-HASH)."""
    return f"{run}/benchmark/{label}"


def benchmark_reports_dir(run: str, label: str) -> str:
    """The reports a benchmark evaluation judged, written by the checkpoint `label` (reused across evaluations)."""
    return f"{run}/benchmark/reports/{label}"


def heldout_dir(run: str, label: str) -> str:
    """The held-out gold measures of one checkpoint label (score.gold): its reports, gold.parquet, manifest."""
    return f"{run}/heldout/{label}"


def round_label(round_idx: int) -> str:
    """The label of round `round_idx`'s checkpoint in benchmark folders.

    >>> round_label(1)
    'round-0001'
    """
    return f"round-{round_idx:04d}"


def plots_dir(run: str, baseline: str | None = None) -> str:
    """Where a run's plots live in the store, with the run: RUN/plots, or RUN/plots-vs-BASELINE.

    >>> plots_dir("ci"), plots_dir("ci", "ci-static")
    ('ci/plots', 'ci/plots-vs-ci-static')
    """
    return f"{run}/plots" if baseline is None else f"{run}/plots-vs-{baseline}"


def run_rounds(store, run: str) -> list[int]:
    """Round numbers that have a folder in `run`; raises, naming the runs there are, when the run does not exist."""
    if not store.fs.exists(store.path(run)):
        known = store.list_runs()
        raise ArtifactError(f"run {run!r} not found in {store.url}; runs there: {', '.join(known) or '(none)'}")
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(store.path(run), detail=False)]
    return sorted(r for n in names if (r := round_of(n)) is not None)


def finished_rounds(store, run: str, folder: str) -> list[int]:
    """Rounds of `run` whose stage folder `folder` has a manifest (none when the run does not exist yet)."""
    if not store.fs.exists(store.path(run)):
        return []
    return [r for r in run_rounds(store, run) if store.read_manifest(stage_dir(run, r, folder))]
