"""The train stage launching itself in two CPU processes (campaign.train_launcher: torchrun; accelerate's trainer
over gloo) gives the checkpoint one process gives. `accelerate launch` itself starts one process on a CPU (its
multi-CPU launch is MPI's), so CPU tests launch with torchrun; on GPUs either launches one process per device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import copy_stages

from score.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "--set",
    "train.micro_batch_tokens=300",
    "--set",
    "train.batch_size=2",
]  # micro-batches split across processes, 2+ steps (round 0 of configs/ci.yaml trains 4 samples)


def cli(*args: str, store: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "score.cli",
        *args,
        "-c",
        "configs/ci.yaml",
        "--set",
        f"store.root={store}",
        *SMALL,
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_two_processes_train_the_same_adapter_as_one(tmp_path, ci_campaign):
    """Round 0's reports and rewards (the session's campaign's) trained by one process and by two."""
    from safetensors.torch import load_file

    one, two = (copy_stages(ci_campaign, tmp_path / s, {0: ("generate", "evaluate")}) for s in ("one", "two"))
    cli("stage", "train", "--round", "0", "--no-flow", store=one)
    launch = ["--set", "campaign.train_launcher=torchrun --nproc_per_node 2", "--set", "model.threads=1"]
    cli("stage", "train", "--round", "0", "--no-flow", *launch, store=two)  # the stage launches its own processes

    stats = [
        json.loads((s / "ci" / "round-0000" / "train" / "_manifest.json").read_text())["stats"] for s in (one, two)
    ]
    print("one process:", stats[0], "\ntwo processes:", stats[1])
    assert stats[0]["processes"] == 1 and stats[1]["processes"] == 2
    assert stats[0]["steps"] == stats[1]["steps"] >= 2 and stats[0]["trainable_tokens"] == stats[1]["trainable_tokens"]
    a, b = (
        load_file(s / "ci" / "round-0000" / "train" / "checkpoint" / "adapter_model.safetensors") for s in (one, two)
    )
    assert a.keys() == b.keys()
    assert any(v.abs().max() > 0 for k, v in a.items() if "lora_B" in k)
    assert_same_adapter(a, b, lr=load_config(ROOT / "configs" / "ci.yaml").train.lr, steps=stats[0]["steps"])


def assert_same_adapter(a: dict, b: dict, lr: float, steps: int) -> None:
    """The gradient summed over two processes' micro-batches is the one-process batch gradient up to float
    summation order. AdamW's first steps move each element by about lr times the sign of its gradient, so an
    element whose gradient is within rounding of 0 may step the other way: nearly every element (99.9%) agrees
    within 2e-6, and none differs by more than the 2 lr a step such a flip can cost."""
    for k in a:
        close = torch.isclose(a[k], b[k], atol=2e-6, rtol=1e-3)
        assert close.float().mean() >= 0.999, (k, int((~close).sum()), a[k].numel())
        assert (a[k] - b[k]).abs().max() <= 2 * lr * steps, (k, float((a[k] - b[k]).abs().max()))
