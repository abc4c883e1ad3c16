"""What a round reads from earlier rounds, in one place: the weights it samples with (round r-1's checkpoint), the
harness it evaluates under (round r-1's harness-evolve), what the judge-hacking alarm compares (the in-loop reward
and the held-out benchmark of rounds r-1 and r), and what a user's name for a checkpoint means. Each returns its
value and the fingerprint that enters the reading stage's own (`score.runner`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from score.checkpoints import CheckpointError, Policy, base_policy, check_folder, checkpoint_kind
from score.harness import LEVERS, Alarm, Harness, from_rows, seed_harness
from score.models import model_folder
from score.pipeline import EVALUATE, EVOLVE, TRAIN, TrainStats
from score.store.layout import CHECKPOINT, benchmark_dir, finished_rounds, round_label, stage_dir
from score.store.schemas import CONTROLS, HARNESS, SUMMARY, BenchmarkStats
from score.store.store import file_sha256

if TYPE_CHECKING:
    from score.workspace import Workspace


def policy_for_round(ws: Workspace, round_idx: int) -> Policy:
    """The weights round `round_idx` samples with: the base model in round 0, else the checkpoint round r-1's
    train stage wrote (which must be finished). On a remote store the checkpoint is fetched once."""
    if round_idx == 0:
        return base_policy(ws.cfg.model)
    folder = stage_dir(ws.cfg.run, round_idx - 1, TRAIN.folder)
    version = ws.store.finished(folder, f"run round {round_idx - 1}'s stages first").content_fingerprint()
    local = ws.store.local_folder(f"{folder}/{CHECKPOINT}", ws.cache / "checkpoints", version)
    return Policy(
        ws.store.display(folder, CHECKPOINT), str(local), checkpoint_kind(local), f"{ws.cfg.model.path}+{version}"
    )


def resolve(ws: Workspace, spec: str) -> tuple[str, Policy]:
    """(label, policy) for a user's checkpoint: 'base'; 'latest' (the last finished train of the config's run);
    'round-N' or 'N' (round N's train checkpoint); or a local checkpoint folder (a LoRA adapter or a full model)."""
    if spec == "base":
        return "base", base_policy(ws.cfg.model)
    if spec == "latest" or spec.removeprefix("round-").isdigit():
        run = ws.cfg.run
        trained = finished_rounds(ws.store, run, TRAIN.folder)
        r = (trained[-1] if trained else None) if spec == "latest" else int(spec.removeprefix("round-"))
        if r is None or r not in trained:
            raise CheckpointError(
                f"run {run!r} has no finished train stage{'' if r is None else f' in round {r}'} in {ws.store.url} "
                f"(trained rounds: {trained or 'none'}); run `score run` first, or pass --checkpoint base or a "
                "checkpoint folder"
            )
        return round_label(r), policy_for_round(ws, r + 1)  # the weights round r's train wrote
    folder = Path(spec)
    if not folder.is_dir():
        raise CheckpointError(
            f"checkpoint {spec!r} is neither 'base', 'latest', 'round-N' nor a folder; pass one of those"
        )
    kind = checkpoint_kind(folder)
    check_folder(folder, kind, model_folder(ws.cfg.model, ws.cache))
    files = sorted(p for p in folder.rglob("*") if p.is_file())  # every file: weights, configs, tokenizer
    blob = "".join(f"{p.relative_to(folder).as_posix()}:{file_sha256(p)}\n" for p in files)
    fp = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return f"folder-{fp[:8]}", Policy(str(folder.resolve()), str(folder), kind, f"{ws.cfg.model.path}+{fp}")


def latest_or_base(ws: Workspace) -> str:
    """'latest' when the config's run has a trained round, else 'base'."""
    return "latest" if finished_rounds(ws.store, ws.cfg.run, TRAIN.folder) else "base"


SEED_FIELDS = tuple(f"harness.{f}" for f in ("dimensions", *LEVERS))  # what the seed harness is made of (not mode)


def harness_for_round(ws: Workspace, round_idx: int) -> tuple[Harness, str]:
    """The harness round `round_idx` evaluates under, and its fingerprint: the seed harness of the config in
    round 0, else the one round r-1's harness-evolve wrote (which must be finished)."""
    if round_idx == 0:
        return seed_harness(ws.cfg.harness), "seed:" + ws.cfg.section_fingerprint(*SEED_FIELDS)
    folder = stage_dir(ws.cfg.run, round_idx - 1, EVOLVE.folder)
    manifest = ws.store.finished(folder, f"run round {round_idx - 1}'s stages first")
    dims = ws.store.read_table(folder, HARNESS.file).to_pylist()
    controls = ws.store.read_table(folder, CONTROLS.file).to_pylist()[0]
    return from_rows(dims, controls), manifest.content_fingerprint()


def alarm_for_round(ws: Workspace, round_idx: int) -> tuple[Alarm | None, str]:
    """What the judge-hacking alarm of round `round_idx` reads, and its fingerprint: with benchmark.each_round on,
    the change of the in-loop solver reward from round r-1 to round r (self-evaluate's summaries) beside the change
    of the held-out benchmark score of the policies that wrote them (checkpoints r-2 and r-1; the base model's is
    0.5 by construction when the reference is its own reports). None while either is missing."""
    if not ws.cfg.benchmark.each_round or round_idx < 1:
        return None, "off"
    heldout, prints = [], []
    for r in (round_idx - 2, round_idx - 1):
        label = "base" if r < 0 else round_label(r)
        folder = benchmark_dir(ws.cfg.run, label)
        manifest = ws.store.read_manifest(folder)
        if manifest is not None:
            stats = ws.store.finished(folder, "rerun the benchmark").stats_as(BenchmarkStats)
            heldout.append((stats.score, stats.score_std))
            prints.append(manifest.content_fingerprint())
        elif label == "base" and ws.cfg.benchmark.reference == "base":
            heldout.append((0.5, 0.0))
            prints.append("base-is-the-reference")
        else:
            return None, f"missing:{label}"
    rewards = []
    for r in (round_idx - 1, round_idx):
        folder = stage_dir(ws.cfg.run, r, EVALUATE.folder)
        prints.append(ws.store.finished(folder, f"run round {r}'s stages first").content_fingerprint())
        rewards.append(ws.store.read_rows(folder, SUMMARY)[0].reward_mean)
    (before, sd0), (after, sd1) = heldout
    alarm = Alarm(rewards[1] - rewards[0], after - before, (sd0**2 + sd1**2) ** 0.5, (round_idx - 1, round_idx))
    return alarm, "|".join(prints)


class CampaignStopped(RuntimeError):
    """A campaign stopped on purpose before its last round; the message says why and how to go on."""


def stop_reason(ws: Workspace, round_idx: int) -> str:
    """Why the campaign should stop after round `round_idx` ("" to go on): the solver trained on nothing in the
    last `campaign.max_untrained_rounds` rounds running (0: never)."""
    limit = ws.cfg.campaign.max_untrained_rounds
    if not limit or round_idx + 1 < limit:
        return ""
    stats = []
    for r in range(round_idx - limit + 1, round_idx + 1):
        manifest = ws.store.read_manifest(stage_dir(ws.cfg.run, r, TRAIN.folder))
        stats.append(manifest.stats_as(TrainStats) if manifest is not None else None)
    if not all(s is not None and "solver" in s.untrained_roles for s in stats):
        return ""
    first = round_idx - limit + 1
    return (
        f"campaign {ws.cfg.run} stopped after round {round_idx}: the solver trained on nothing in rounds {first}-"
        f"{round_idx} (round {round_idx}: {stats[-1].note}); more rounds would sample from the same weights. Change "
        "the reward or the config, or set campaign.max_untrained_rounds=0 to go on regardless"
    )
