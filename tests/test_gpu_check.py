"""`benchmarks/gpu_check.py` on its tiny shape on the CPU: every part runs and the table holds positive figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--shape", "tiny", "--device", "cpu", "--batch", "2", "--new-tokens", "8", "--prompt-tokens", "16",
        "--micro-batch-tokens", "64,128"]  # fmt: skip


def test_gpu_check_tiny_shape_on_cpu():
    out = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", *ARGS, "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    row, first, *peaks = [line for line in out.stdout.splitlines() if line.startswith("| tiny |")]
    _, shape, params, sampler, generate, ratio, train, mfu, peak, _ = row.split("|")
    assert float(params.strip().removesuffix("M")) > 0
    assert all(float(cell) > 0 for cell in (sampler, generate, ratio, train)), row
    assert (mfu.strip(), peak.strip()) == ("n/a", "unknown")  # no peak for a CPU, so no MFU
    # masked samples, old log-probs recomputed: ratio 1 at the first step, the sampler's numerics are the trainer's
    _, _, step_ratio, gap, handed_back, _ = first.split("|")
    gap_mean, gap_max = (float(x) for x in gap.split("/"))
    assert float(step_ratio) == 1.0 and gap_max < 1e-3 and handed_back.strip() == "nan", first  # no GPU memory here
    assert [p.split("|")[2].strip() for p in peaks] == ["64", "128"]  # one step at each --micro-batch-tokens
    assert all(p.split("|")[3].strip() == "nan" and float(p.split("|")[4]) > 0 for p in peaks)  # plan, no GPU peak


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message is for machines without a GPU")
def test_gpu_check_without_cuda_says_how_to_run_on_cpu():
    out = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    assert "no CUDA device" in out.stderr and "--shape tiny --device cpu" in out.stderr.splitlines()[-1]
