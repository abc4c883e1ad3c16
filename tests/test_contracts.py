"""The declared stage contracts (score/pipeline.py): they hold together, the runner enforces them, and the
fingerprints they give rerun exactly what a change touches."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from score.config import RunConfig, UndeclaredConfig, load_config
from score.pipeline import EVOLVE, STAGE_NAMES, STAGES, TRAIN, StageName, stage
from score.runner import run_stage
from score.store.schemas import SCHEMAS
from score.workspace import Workspace
from tests.conftest import ToyBackend

ROOT = Path(__file__).resolve().parents[1]


def test_every_read_is_written_by_an_earlier_stage_and_every_declaration_resolves():
    order = {s.name: i for i, s in enumerate(STAGES)}
    for i, spec in enumerate(STAGES):
        for read in spec.reads:
            producer = stage(read.stage)
            assert order[producer.name] < i, (
                f"{spec.name} reads {read.artifact.file} from {producer.name}, which runs later"
            )
            assert read.artifact in producer.writes, (
                f"{spec.name} reads {read.artifact.file}, which {producer.name} does not write"
            )
        for artifact in spec.writes:
            assert SCHEMAS[artifact.file] is artifact.schema, f"{artifact.file} is not the schema constant"
        RunConfig().dump(*spec.config)  # every declared config path exists
        assert len({s.folder for s in STAGES}) == len(STAGES)
    # what a round reads from the round before: the harness (harness-evolve) and the policy (train's checkpoint)
    uses = {u for s in STAGES for u in s.uses}
    assert "harness" in uses and EVOLVE.writes and "policy" in uses and TRAIN.checkpoint
    assert get_args(StageName) == STAGE_NAMES  # the UI's choice of stages is the pipeline's


@pytest.mark.parametrize(
    "name, removed",
    [
        ("generate-reports", "generate"),
        ("self-evaluate", "reward"),
        ("self-evaluate", "harness.rules.crowded_reward"),
        ("harness-evolve", "harness"),
    ],
)
def test_a_stage_reading_config_it_does_not_declare_fails(toy_workspace, name, removed):
    ws = toy_workspace
    for earlier in STAGES[: [s.name for s in STAGES].index(name)]:
        run_stage(ws, earlier, 0)
    spec = stage(name)
    narrowed = dataclasses.replace(spec, config=tuple(p for p in spec.config if p != removed))
    with pytest.raises(UndeclaredConfig, match=rf"stage {name} read config '{removed.split('.')[0]}"):
        run_stage(ws, narrowed, 0)
    assert ws.store.read_manifest(f"toy/round-0000/{spec.folder}") is None  # nothing half-written is visible


def _workspace(base: Path, corpus: Path, *overrides: str) -> Workspace:
    cfg = load_config(
        ROOT / "configs" / "ci.yaml",
        [
            f"store.root={base}",
            f"search.corpus={corpus}",
            f"data.queries={corpus.parent / 'queries.jsonl'}",
            "run=toy",
            *overrides,
        ],
    )
    return Workspace(cfg, cache=base.parent / "cache", make_backend=ToyBackend)


def test_changing_what_a_later_round_reads_reruns_it(tmp_path, toy_corpus):
    """The two resume bugs the contracts fixed: self-evaluate reads harness.rules.crowded_reward (top_share)
    from round 1 on, and train reads campaign.rounds (the cosine schedule's horizon)."""
    ws = _workspace(tmp_path / "store", toy_corpus)
    for r in (0, 1):
        for spec in STAGES[: 4 if r == 0 else 2]:
            run_stage(ws, spec, r)
    changed = _workspace(tmp_path / "store", toy_corpus, "harness.rules.crowded_reward=0.3")
    assert run_stage(changed, "generate-reports", 1).skipped  # it does not read the harness rules
    assert not run_stage(changed, "self-evaluate", 1).skipped
    longer = _workspace(tmp_path / "store", toy_corpus, "harness.rules.crowded_reward=0.3", "campaign.rounds=5")
    assert not run_stage(longer, "train", 0).skipped
    assert run_stage(longer, "generate-reports", 0).skipped


def test_inspect_and_report_import_no_torch(toy_workspace, tmp_path):
    ws = toy_workspace
    for spec in STAGES[:3]:
        run_stage(ws, spec, 0)
    code = (
        "import sys\nfrom score.cli import app\n"
        "for args in (['inspect', 'toy'], ['report', 'toy', '--out', sys.argv[1]], ['runs']):\n"
        "    try:\n        app(args + ['-c', 'configs/ci.yaml', '--set', 'store.root=' + sys.argv[2]])\n"
        "    except SystemExit as e:\n        assert not e.code, (args, e.code)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\nprint('no torch')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "plots"), ws.cfg.store.root],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "no torch" in done.stdout, done.stderr[-2000:]
    assert (tmp_path / "plots" / "index.html").exists()


@dataclasses.dataclass
class _Counted:
    reports: int = 0


def _constant_rewards(ctx) -> _Counted:
    """A reward source for the test below: every report's reward is its sample index (spread in every group)."""
    from score.pipeline import REWARDS_ARTIFACTS
    from score.store.schemas import REPORTS, SOLVER_REWARDS

    rows = [
        {"round": ctx.round, "query_id": r["query_id"], "trajectory_id": r["trajectory_id"], "validity": 1.0,
         "score": float(r["sample_idx"]), "reward": float(r["sample_idx"]), "group_mean": None, "group_std": None}
        for r in ctx.read(REPORTS).to_pylist()
    ]  # fmt: skip
    ctx.write(SOLVER_REWARDS, rows)
    for artifact in REWARDS_ARTIFACTS:  # the rest of what train reads through the seam: nothing
        if artifact is not SOLVER_REWARDS:
            ctx.write(artifact, [])
    return _Counted(len(rows))


def test_train_reads_its_rewards_from_a_declared_stand_in(toy_workspace):
    from score.pipeline import REWARDS_ARTIFACTS, REWARDS_SEAM, Read, StageSpec
    from score.store.schemas import REPORTS

    source = StageSpec(
        name="constant-reward", folder="constant-reward", impl=f"{__name__}:_constant_rewards", stats=_Counted,
        reads=(Read("generate-reports", REPORTS),),
        writes=REWARDS_ARTIFACTS,
    )  # fmt: skip
    ws = toy_workspace
    run_stage(ws, "generate-reports", 0)
    assert run_stage(ws, source, 0).manifest.stats == {"reports": 4}
    trained = run_stage(ws, TRAIN, 0, sources={REWARDS_SEAM: source})
    assert trained.manifest.inputs["constant-reward"] and "self-evaluate" not in trained.manifest.inputs
    assert trained.manifest.stats["solver_flat_groups"] == 0 and trained.manifest.stats["solver_samples"] > 0
    with pytest.raises(ValueError, match="unknown seam"):
        run_stage(ws, TRAIN, 0, sources={"judge": source})
