"""Device bugs caught on the CPU: a train step and a sampling step with the model on a stand-in device.

On a GPU, a tensor made on the CPU and used with the model's tensors fails at the first step (e.g. a CPU mask
times a CUDA weight). The CPU path cannot see it: every tensor is on the CPU. Here the model sits on the `meta`
device (shapes, dtypes and devices, no data), which raises on exactly that mix ("Tensor on device cpu is not on
the expected device meta"), as CUDA does. Fake CUDA tensors (`FakeTensorMode`) would be the literal stand-in, but
on a CPU-only torch build autograd aborts the process on them ("PyTorch is not linked with support for cuda
devices"): no backward can run. Meta kernels check devices like CUDA's for most ops but not all (an in-place
multiply by a CPU tensor passes), so every op is checked here as CUDA checks it: a tensor with dimensions on the
CPU beside one on the device raises, except in copies between devices. Meta tensors have no values, so the few
numbers the code reads back (`float(t)`, `t.tolist()`) are answered with 1s: what these tests check is where
tensors live, not what they hold.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from score.config import ModelConfig, TrainConfig
from score.models import resolve_model_path
from score.models.base import SamplingParams

STAND_IN = torch.device("meta")


aten = torch.ops.aten
READS = {aten._local_scalar_dense.default, aten.item.default, aten.is_nonzero.default, aten.equal.default}
CROSSING = {aten.copy_.default, aten._to_copy.default, aten.lift_fresh.default}  # copies between devices: allowed


class _Devices(TorchDispatchMode):
    """Each op's tensors on one device, as CUDA requires (a 0-dim CPU tensor is a scalar: allowed); a meta tensor
    read as a Python number (`float`, `int`, `bool`, `.item()`) reads 1 (True)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in READS:
            t = args[0]
            return True if t.dtype == torch.bool else (1.0 if t.is_floating_point() else 1)
        if func not in CROSSING:
            tensors = [a for a in pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
            devices = {t.device for t in tensors if t.dim() > 0 or t.device != torch.device("cpu")}
            if len(devices) > 1:
                raise RuntimeError(f"{func}: tensors on {sorted(map(str, devices))}: not on the expected device")
        return func(*args, **(kwargs or {}))


class _Lists(TorchFunctionMode):
    """A meta tensor read as a list reads 1s of its shape."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.tolist and args[0].device == STAND_IN:
            t = args[0]
            ones = 1.0 if t.is_floating_point() else 1
            return _filled(list(t.shape), ones)
        return func(*args, **(kwargs or {}))


def _filled(shape: list[int], value):
    return [_filled(shape[1:], value) for _ in range(shape[0])] if shape else value


@contextlib.contextmanager
def stand_in_device():
    with _Devices(), _Lists():
        yield


def _samples(tok) -> list:
    """What a round trains on: a react trajectory (tool outputs masked), two judgements sharing their prefix, and
    a restricted-answer verdict."""
    from score.trainer import TrainSample

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    act, tool, report = ids(" search: solar"), ids(" [1] Solar panels..."), ids(" Solar power is cheap [1].")
    written = act + tool + report
    prefix = ids("Query: solar power. Report: Solar power is cheap [1].")
    verdict, score = ids(" yes"), ids(" 7/10")
    return [
        TrainSample(
            "solver", ids("Research solar power."), written, [-1.0] * len(written), 1.0, temperature=0.8,
            mask=[1] * len(act) + [0] * len(tool) + [1] * len(report),
        ),
        TrainSample("evaluator", ids(" Rate accuracy."), score, [-1.0] * len(score), 1.0, prefix_ids=prefix),
        TrainSample("evaluator", ids(" Rate coverage."), score, [-2.0] * len(score), -1.0, prefix_ids=prefix),
        TrainSample(
            "evaluator", ids(" Is [1] supported?"), verdict, [-0.7], -1.0, choices=[ids(" yes") + ids(" no")]
        ),
    ]  # fmt: skip


def _trainer(**train):
    from score.trainer import Trainer

    cfg = TrainConfig(lr=1e-3, lora_rank=8, **train)
    trainer = Trainer(ModelConfig(), cfg, resolve_model_path(ModelConfig()), None, seed=0)
    trainer.model.to(STAND_IN)
    trainer.device = STAND_IN
    return trainer


@pytest.mark.parametrize("recompute", [True, False])
def test_a_train_step_makes_every_tensor_on_the_models_device(recompute):
    """KL on, packed siblings, masked tool outputs, a restricted answer, two steps (the later one's old log-probs
    recomputed before the first): each tensor the trainer makes is on the model's device, or the step raises."""
    trainer = _trainer(batch_size=2, kl_coef=0.05, recompute_old_logprobs=recompute)
    samples = _samples(trainer.tokenizer)
    with stand_in_device():
        logs = trainer.train(samples, {"solver": 1.0, "evaluator": 0.5}, total_steps=2)
    assert len(logs) == 2 and all(log.tokens > 0 for log in logs)
    grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
    assert grads and all(g.device == STAND_IN for g in grads)  # the backward ran on the stand-in device


def test_a_cpu_tensor_used_with_the_models_fails_here_as_on_a_gpu():
    """What the test above relies on: the line a GPU rejected (a CPU mask times the device's weights)."""
    w = torch.ones(2, 5, device=STAND_IN)
    with stand_in_device(), pytest.raises(RuntimeError, match="not on the expected device"):
        w[0, 2:] *= torch.tensor([1.0, 0.0, 1.0])
    with stand_in_device():
        w[0, 2:] *= torch.tensor([1.0, 0.0, 1.0], device=w.device)  # the fixed line
        w[0, 2:] = torch.tensor([1.0, 0.0, 1.0])  # a copy between devices: allowed, as on a GPU


def test_sampling_and_scoring_make_every_tensor_on_the_models_device():
    from score.models.transformers_backend import TransformersBackend

    backend = TransformersBackend(resolve_model_path(ModelConfig()))
    backend.model.to(STAND_IN)
    backend.device = STAND_IN
    with stand_in_device():
        [samples] = backend.sample(["Write about solar power."], SamplingParams(n=2, max_tokens=4, temperature=0.8))
        scored = backend.score(["Write about solar power."], [[1, 2, 3]])
        yes, no = backend.tokenizer(" yes")["input_ids"][0], backend.tokenizer(" no")["input_ids"][0]
        chosen = backend.choice_logprobs(["Is it supported?"], [yes, no])
    assert len(samples) == 2 and all(len(s.token_ids) == 4 for s in samples)
    assert len(scored[0]) == 3 and len(chosen[0]) == 2
