"""Which GPU a process samples on: a sharded stage's process workers each pinned to their own device.

A process pool's workers are started with `pin` as their initializer: each takes the first of the round
process's visible devices no other worker of the pool holds (an exclusive lock on a file in the pool's own
folder, released when the process ends) and from then on sees only it (`CUDA_VISIBLE_DEVICES`, set again by
`keep_pinned` at each task's start, before torch or vLLM touch CUDA), so a node of 8 GPUs samples with 8
engines, one per GPU, tensor parallel 1 each."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from score.config import ConfigError

_held = None  # this process's device lock, open for the process's life (closing it would free the device)
_pinned: str | None = None  # the device `pin` gave this process


def visible_devices() -> list[str]:
    """The devices this process may use: `CUDA_VISIBLE_DEVICES`'s ids when it is set, else every GPU torch counts
    (none on a machine without one)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def on_gpu(backend: str, device: str) -> bool:
    """Whether the model config samples on a GPU (vLLM, or the transformers backend on a CUDA device)."""
    return backend == "vllm" or device.startswith("cuda")


def check_workers(workers: int, devices: list[str], needed: bool) -> None:
    """Refuse, before any worker starts, more GPU workers than devices (two engines on one GPU both run out)."""
    if needed and workers > len(devices):
        seen = ",".join(devices) or "none"
        raise ConfigError(
            f"{workers} workers sample on GPUs but {len(devices)} device(s) are visible (CUDA_VISIBLE_DEVICES or "
            f"torch: {seen}): one worker per GPU; run with --workers {max(len(devices), 1)}"
        )


def pin(devices: list[str], locks: str) -> None:
    """A pool worker's initializer: see only the first of `devices` no other worker holding a lock in the folder
    `locks` has taken; with none left (more CPU workers than devices), see what the round process saw."""
    global _held, _pinned
    for device in devices:
        f = open(Path(locks) / f"device-{device}.lock", "w")  # noqa: SIM115 held open for the process's life
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        _held, _pinned = f, device
        os.environ["CUDA_VISIBLE_DEVICES"] = device
        return


def keep_pinned() -> None:
    """At the start of each task in a pool worker: see only the pinned device again (Prefect's process pool gives
    every task the round process's environment, after the initializer ran). Nothing when this process is not pinned."""
    if _pinned is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = _pinned


def memory_state() -> dict | None:
    """This process's GPU as a start-up failure should describe it: free and total memory, what this process's torch
    holds, and every process on the device with its memory (NVML, when installed); None without a CUDA device."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    state = dict(free=free, total=total, allocated=torch.cuda.memory_allocated(), reserved=torch.cuda.memory_reserved())
    try:
        import pynvml  # nvidia-ml-py, a vLLM dependency

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        state["processes"] = [(p.pid, p.usedGpuMemory) for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)]
    except Exception:  # noqa: BLE001 the description is best effort: no NVML, no process list
        state["processes"] = None
    return state


def memory_report(state: dict | None, wanted: float) -> str:
    """`memory_state` in words, beside the share of the device an engine wanted.

    >>> memory_report(dict(free=10 * 2**30, total=80 * 2**30, allocated=60 * 2**30, reserved=64 * 2**30,
    ...                    processes=[(41, 66 * 2**30)]), 0.85)  # doctest: +NORMALIZE_WHITESPACE
    'the GPU has 10.0 of 80.0 GiB free and the engine wanted 0.85 of it (68.0 GiB); this process holds 60.0 GiB
    (64.0 GiB reserved by torch); processes on the GPU: pid 41 (66.0 GiB)'
    """
    if state is None:
        return "no CUDA device is visible to this process"
    gib = 2**30
    text = (
        f"the GPU has {state['free'] / gib:.1f} of {state['total'] / gib:.1f} GiB free and the engine wanted {wanted} "
        f"of it ({wanted * state['total'] / gib:.1f} GiB); this process holds {state['allocated'] / gib:.1f} GiB "
        f"({state['reserved'] / gib:.1f} GiB reserved by torch)"
    )
    if state["processes"] is not None:
        held = ", ".join(f"pid {pid} ({(used or 0) / gib:.1f} GiB)" for pid, used in state["processes"]) or "none"
        text += f"; processes on the GPU: {held}"
    return text
