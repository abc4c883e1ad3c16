"""`score plan`: the memory plan of a config on one GPU, from the model's config.json (no weights read)."""

from pathlib import Path

from test_cli_e2e import score

from score.config import load_config
from score.memory_plan import architecture, fits, plan_problem, sampler_plan, trainer_plan

QWEN_7B = Path("configs/models/qwen2.5-7b-instruct/config.json")
CONFIG_7B = Path("configs/qwen2.5-7b-vllm.yaml")


def test_the_7b_plan_counts_qwen_exactly_and_fits_an_80_gb_gpu_with_the_handover():
    cfg = load_config(CONFIG_7B)
    arch = architecture(QWEN_7B, cfg.train.target_modules)
    assert arch.params == 7_615_616_512  # Qwen2.5-7B's published count
    assert arch.lora_params * 64 == 161_480_704  # rank 64 on every linear layer of the 28 blocks
    sampler, room = sampler_plan(cfg, arch, 80)
    assert [x.part for x in sampler] == ["weights", "LoRA slot", "CUDA graphs, workspaces", "KV cache"]
    assert room["budget_gib"] == 68.0 and sum(x.gib for x in sampler) == 68.0  # 0.85 x 80: vLLM's share
    assert room["kv_tokens"] == int(sampler[-1].gib * 2**30 / 57_344)  # 56 KiB a token: 28 layers x 4 KV heads
    assert room["trajectories"] == room["kv_tokens"] // 12_288 == 78  # of generate.max_context_tokens
    train = {x.part: x.gib for x in trainer_plan(cfg, arch, 1024)}
    assert 30 < sum(train.values()) < 80 and fits(cfg, room, sum(train.values()), 80) == ""  # after the hand-over
    assert "logits and their gradient" not in train  # the output layer is applied 1,024 positions at a time
    assert train["logits, fp32 log-softmax"] == 1024 * 152_064 * (2 * 2 + 12) / 2**30


def test_a_model_whose_logits_change_after_the_output_layer_is_planned_with_whole_logits(tmp_path):
    """A soft cap after the output layer (Gemma 2's config key) keeps the logits whole: tokens x vocabulary."""
    import json

    config = json.loads(QWEN_7B.read_text()) | {"final_logit_softcapping": 30.0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    cfg = load_config(CONFIG_7B)
    arch = architecture(tmp_path / "config.json", cfg.train.target_modules)
    train = {x.part: x.gib for x in trainer_plan(cfg, arch, 1024)}
    assert arch.whole_logits and train["logits and their gradient"] == 2 * 32_768 * 152_064 * 2 / 2**30


def test_a_gpu_too_small_is_one_line_naming_the_fix():
    out = score("plan", "-c", str(CONFIG_7B), "--model-config", str(QWEN_7B), "--gpu-gib", "24", timeout=120)
    assert out.returncode == 2
    [line] = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert "more than the GPU's 24: lower train.micro_batch_tokens" in line and "gradient_checkpointing" not in line
    assert "KV cache" in out.stdout and "train step" in out.stdout  # the plan is printed before the verdict
    missing = score("plan", "-c", str(CONFIG_7B), timeout=120)  # /models/Qwen2.5-7B-Instruct is not here
    assert missing.returncode == 2 and "pass --model-config" in missing.stderr


def test_a_run_on_a_gpu_too_small_is_refused_at_load_naming_the_fix():
    """What `score run`'s preflight asks on a CUDA device (`check_memory`), for the GPU's size: nothing on 80 GB;
    on 32 GB the train step; on 16 GB the sampler's KV cache holds no trajectory of the config's length."""
    cfg = load_config(CONFIG_7B)
    arch = architecture(QWEN_7B, cfg.train.target_modules)
    assert plan_problem(cfg, arch, 80) == ""
    assert plan_problem(cfg, arch, 32).startswith("a train step needs about 36.5 GiB, more than the GPU's 32")
    assert "less than one trajectory of generate.max_context_tokens 12288" in plan_problem(cfg, arch, 16)
