"""Shared-prefix packing and sampling temperature in the trainer: packing changes the cost, never the log-probs.

A tiny random Llama checks the arithmetic under both attention implementations (eager and sdpa, a 4D float mask
each); the real embedded model checks it once more and takes one train step on fresh packed samples."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from score.trainer import (
    TrainSample,
    micro_batches,
    padded_tokens,
    sample_logprobs,
    step_totals,
    written_logprobs,
)

ROLES = {"solver": 1.0, "evaluator": 0.5}


def _tiny(tied: bool = False, attn_implementation: str | None = None):
    """A tiny random Llama (96 tokens of vocabulary, 32 hidden), seeded; untied output layer unless `tied`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tied,
        attn_implementation=attn_implementation,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def tiny(request):
    torch.set_num_threads(1)
    model = _tiny(attn_implementation=request.param).eval()
    assert model.config._attn_implementation == request.param
    return model


def _ids(g: torch.Generator, n: int) -> list[int]:
    return torch.randint(3, 96, (n,), generator=g).tolist()


def _mixed(g: torch.Generator) -> list[TrainSample]:
    """Two sibling groups (suffixes of 0 to 9 tokens, 1 to 4 written, temperatures 0.7 to 1.3) and two plain samples."""
    a, b = _ids(g, 30), _ids(g, 17)
    shapes = [(a, 5, 1, 1.0), (a, 0, 2, 0.7), (a, 9, 4, 1.3), (b, 4, 2, 1.0), (b, 6, 1, 0.7)]
    samples = [TrainSample("evaluator", _ids(g, p), _ids(g, c), [], 1.0, t, pre) for pre, p, c, t in shapes]
    return samples + [
        TrainSample("solver", _ids(g, p), _ids(g, c), [], -1.0, t) for p, c, t in [(12, 5, 0.9), (3, 2, 1)]
    ]


def _unpacked(model, samples: list[TrainSample]) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: every sample alone in a left-padded row, the prefix folded into its prompt."""
    rows = [(s.prefix_ids + s.prompt_ids, s.token_ids) for s in samples]
    return written_logprobs(model, rows, 0, "cpu", [s.temperature for s in samples])


def _packed(model, samples: list[TrainSample], budget: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each sample's (written log-probs, row) as the micro-batches at `budget` compute them."""
    out = {}
    for chunk in micro_batches(samples, budget):
        logp, mask = sample_logprobs(model, [[samples[i] for i in row] for row in chunk], 0, "cpu")  # (S, L)
        out.update({i: logp[b, mask[b]] for b, i in enumerate(i for row in chunk for i in row)})
    return [out[i] for i in range(len(samples))]


def test_packed_siblings_match_unpacked_log_probs_in_one_mixed_micro_batch(tiny):
    samples = _mixed(torch.Generator().manual_seed(0))
    [chunk] = micro_batches(samples, 10_000)
    assert sorted(map(sorted, chunk)) == [[0, 1, 2], [3, 4], [5], [6]]  # siblings share a row, plain ones alone
    calls = []
    hook = tiny.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        packed = _packed(tiny, samples, 10_000)
        hook.remove()
        ref, mask = _unpacked(tiny, samples)
    assert len(calls) == 1  # one forward per micro-batch, mixed or not: under DDP every forward is a collective
    for b, lp in enumerate(packed):
        assert lp.shape == (len(samples[b].token_ids),)
        torch.testing.assert_close(lp, ref[b, mask[b]], atol=1e-4, rtol=0)
    with torch.no_grad():  # a micro-batch with no prefix in it is computed exactly as before packing
        alone, _ = sample_logprobs(tiny, [[s] for s in samples[5:]], 0, "cpu")
        assert torch.equal(alone, _unpacked(tiny, samples[5:])[0])


def test_a_group_wider_than_the_budget_is_split_into_rows_that_each_fit(tiny):
    g = torch.Generator().manual_seed(1)
    prefix = _ids(g, 40)
    samples = [TrainSample("evaluator", _ids(g, 8 + k % 3), _ids(g, 2), [], 1.0, prefix_ids=prefix) for k in range(12)]
    chunks = micro_batches(samples, 100)
    rows = [row for chunk in chunks for row in chunk]
    assert sorted(i for row in rows for i in row) == list(range(12)) and len(rows) > 1
    assert all(padded_tokens([[samples[i] for i in row] for row in chunk]) <= 100 for chunk in chunks)
    with torch.no_grad():
        ref, mask = _unpacked(tiny, samples)
        for b, lp in enumerate(_packed(tiny, samples, 100)):
            torch.testing.assert_close(lp, ref[b, mask[b]], atol=1e-4, rtol=0)


def test_log_probs_are_those_of_the_tempered_distribution(tiny):
    g = torch.Generator().manual_seed(2)
    prefix, prompt, written = _ids(g, 12), _ids(g, 5), _ids(g, 4)
    with torch.no_grad():
        logits = tiny(input_ids=torch.tensor([prefix + prompt + written])).logits[0]  # (T, V)
        direct = torch.log_softmax(logits[-5:-1] / 0.7, -1).gather(-1, torch.tensor(written)[:, None]).squeeze(-1)
        plain, _ = written_logprobs(tiny, [(prefix + prompt, written)], 0, "cpu", [0.7])
        sibling = TrainSample("evaluator", prompt, written, [], 1.0, 0.7, prefix)
        packed, _ = sample_logprobs(tiny, [[sibling, dataclasses.replace(sibling, temperature=1.0)]], 0, "cpu")
    torch.testing.assert_close(plain[0], direct, atol=1e-5, rtol=0)
    torch.testing.assert_close(packed[0], direct, atol=1e-5, rtol=0)
    assert (packed[1] - direct).abs().max() > 1e-2  # temperature 1 is another distribution


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_a_temperature_that_is_not_positive_is_refused_naming_the_sample(temperature):
    with pytest.raises(ValueError, match=r"evaluator sample writing \[7, 8\].*temperature"):
        TrainSample("evaluator", [1], [7, 8], [-1.0, -1.0], 1.0, temperature)


def test_padding_in_packed_rows_stays_finite_through_backward(tiny):
    g = torch.Generator().manual_seed(3)
    long, short = _ids(g, 40), _ids(g, 6)
    rows = [
        [TrainSample("evaluator", _ids(g, 3), _ids(g, 1), [], 1.0, prefix_ids=long) for _ in range(4)],
        [TrainSample("evaluator", [], _ids(g, 1), [], 1.0, prefix_ids=short)],  # 7 tokens, padded to 56
    ]
    logp, mask = sample_logprobs(tiny, rows, 0, "cpu")  # (5, 1)
    assert torch.isfinite(logp).all() and mask.all()
    (logp * 0.0).sum().backward()  # a zero-weight stand-in: the gradient must be 0, not NaN
    assert all(torch.isfinite(p.grad).all() for p in tiny.parameters() if p.grad is not None)
    tiny.zero_grad(set_to_none=True)


@pytest.fixture(scope="module")
def trainer():
    from score.config import ModelConfig, TrainConfig
    from score.models import resolve_model_path
    from score.trainer import Trainer

    model_cfg = ModelConfig(threads=1)
    cfg = TrainConfig(lr=1e-3, batch_size=16, kl_coef=0.05, lora_rank=8, aggregation="grpo")
    return Trainer(model_cfg, cfg, resolve_model_path(model_cfg), None, seed=0)


def _real_batch(trainer) -> list[TrainSample]:
    g = torch.Generator().manual_seed(4)

    def ids(n):
        return torch.randint(1000, 20000, (n,), generator=g).tolist()

    prefix = ids(48)
    shapes = [(6, 1, 0.7), (0, 2, 0.7), (9, 2, 1.0), (4, 3, 0.7)]
    samples = [
        TrainSample("evaluator", ids(p), ids(c), [], (-1.0) ** k, t, prefix) for k, (p, c, t) in enumerate(shapes)
    ]
    samples += [TrainSample("solver", ids(20), ids(6), [], 1.0, 0.7), TrainSample("solver", ids(8), ids(3), [], -1.0)]
    with torch.no_grad():  # fresh: old log-probs from the same weights, through the unpacked path
        logp, mask = _unpacked_on(trainer, samples)
    for b, s in enumerate(samples):
        s.old_logprobs = logp[b, mask[b]].tolist()
    return samples


def _unpacked_on(trainer, samples):
    rows = [(s.prefix_ids + s.prompt_ids, s.token_ids) for s in samples]
    return written_logprobs(
        trainer.model, rows, trainer.pad_id, trainer.accelerator.device, [s.temperature for s in samples]
    )


def test_the_real_model_packed_matches_unpacked(trainer):
    samples = _real_batch(trainer)
    [chunk] = micro_batches(samples, trainer.cfg.micro_batch_tokens)
    with torch.no_grad():
        logp, mask = sample_logprobs(trainer.model, [[samples[i] for i in row] for row in chunk], trainer.pad_id, "cpu")
    for b, i in enumerate(i for row in chunk for i in row):
        torch.testing.assert_close(logp[b, mask[b]], torch.tensor(samples[i].old_logprobs), atol=1e-4, rtol=0)


def test_a_first_step_on_fresh_packed_samples_has_ratio_one_and_counts_the_packed_width(trainer):
    samples = _real_batch(trainer)
    log = trainer._step(samples, ROLES, epoch=0, total_steps=10)
    assert log.ratio_mean == pytest.approx(1.0, abs=1e-3) and log.clip_frac == 0.0
    assert log.kl == pytest.approx(0.0, abs=1e-6)  # LoRA starts at B = 0: policy and reference agree
    assert log.tokens == sum(len(s.token_ids) for s in samples) and math.isfinite(log.loss)
    packed_row = 48 + sum(len(s.prompt_ids) + len(s.token_ids) for s in samples[:4])
    assert log.padded_tokens == 3 * packed_row  # one packed row, two plain rows padded to its width


def test_a_gradient_norm_the_engine_does_not_return_is_logged_as_unknown(trainer, monkeypatch):
    """Under DeepSpeed accelerate's clip_grad_norm_ returns None (the engine clips): the step goes on, its norm NaN."""
    monkeypatch.setattr(trainer.accelerator, "clip_grad_norm_", lambda params, max_norm: None)
    log = trainer._step(_real_batch(trainer), ROLES, epoch=0, total_steps=10)
    assert math.isnan(log.grad_norm) and math.isfinite(log.loss)


def test_a_zero_weight_stand_in_with_packed_rows_gives_a_finite_loss(trainer):
    samples = _real_batch(trainer)
    rows = [samples[:4], samples[4:5]]
    totals = step_totals()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer._micro_batch(rows, [1.0] * 5, False, totals)  # not real: every weight 0
    assert totals["loss"] == 0.0 and totals["tokens"] == 0 and totals["padded"] == 0
    grads = [p.grad for p in trainer.unwrapped.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() and not g.any() for g in grads)
    trainer.optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("shares", [{"solver": 1.0, "evaluator": 1.0}, {"solver": 1.0, "evaluator": 0.5}])
def test_each_role_holds_its_configured_share_of_a_mixed_batch_by_weight(trainer, shares):
    """Per-role normalisation: four evaluator samples of 1-3 tokens beside two solver samples of 3-6 tokens hold
    evaluator / (solver + evaluator) of the step's update by weight, whatever their share of the tokens."""
    samples = _real_batch(trainer)
    log = trainer._step(samples, shares, epoch=0, total_steps=10)
    assert log.evaluator_share == pytest.approx(shares["evaluator"] / sum(shares.values()), abs=1e-6)
    assert log.evaluator_token_share == pytest.approx(8 / 17)  # by count: 1 + 2 + 2 + 3 of 17 tokens


class _LargestLogits(torch.utils._python_dispatch.TorchDispatchMode):
    """The most positions of any (..., vocabulary) tensor an op makes, forward and backward (the output layer's
    weight, transposed, and its gradient are (hidden, vocabulary): not positions)."""

    def __init__(self, vocab: int, hidden: int):
        super().__init__()
        self.vocab, self.weight, self.positions = vocab, (hidden, vocab), 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dim() and t.shape[-1] == self.vocab and t.shape != self.weight:
                self.positions = max(self.positions, t.numel() // self.vocab)
        return out


@pytest.mark.parametrize("tied", [True, False])
def test_the_output_layer_in_chunks_gives_the_whole_logits_values_and_gradients(monkeypatch, tied):
    """With `head` the forward hands back hidden states and the output layer is applied 3 positions at a time under
    checkpoint: log-probs and every weight's gradient are those of the whole logits, packed and plain rows alike,
    and no tensor of more than 3 positions' logits is made, forward or backward (without `head`: all of them)."""
    import score.trainer as trainer

    monkeypatch.setattr(trainer, "LOGSOFTMAX_CHUNK", 3)
    model = _tiny(tied)
    head = trainer.output_layer(model)
    assert head is model.lm_head and model.training  # found, and the check left the model as it was
    samples = _mixed(torch.Generator().manual_seed(3))
    for rows in ([[s] for s in samples[5:]], [samples[:3], samples[3:5], samples[5:6]]):  # plain, then packed
        seen, grads = {}, {}
        for name, h in (("whole", None), ("chunks", head)):
            model.zero_grad()
            with _LargestLogits(96, 32) as largest:
                logp, mask = sample_logprobs(model, rows, 0, "cpu", torch.float32, h)
                logp[mask].sum().backward()
            seen[name] = (logp.detach(), largest.positions)
            grads[name] = {n: p.grad.clone() for n, p in model.named_parameters()}
        (whole, most), (chunked, at_most) = seen["whole"], seen["chunks"]
        assert torch.allclose(chunked, whole, atol=1e-6) and at_most == 3 < most
        for n, g in grads["whole"].items():
            assert torch.allclose(grads["chunks"][n], g, atol=1e-6), n


def test_a_model_that_changes_its_logits_after_the_output_layer_keeps_them_whole():
    """A soft cap after the output layer (Gemma 2): the layer's output is not the logits, so no `head`."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        final_logit_softcapping=0.05,
    )
    from score.trainer import output_layer

    assert output_layer(Gemma2ForCausalLM(config)) is None
    assert output_layer(_tiny(tied=True)) is not None
