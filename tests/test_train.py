"""The train stage: samples and advantages on toy rounds; the trainer on the real embedded model (LoRA)."""

import math

import pytest
import torch

from score.config import ModelConfig, TrainConfig
from score.rl import policy_loss
from score.runner import run_stage, stage_folder
from score.stages.train import TrainInputs, build_samples


def _span(name, n, prefix=""):
    return {
        "name": name,
        "prefix": prefix,
        "prompt": f"<{name} prompt>",
        "text": "x",
        "token_ids": list(range(1, n + 1)),
        "logprobs": [-1.0] * n,
        "temperature": 0.8,
        "finish_reason": "stop",
    }


def test_samples_carry_group_normalised_advantages_and_flat_groups_are_counted():
    reports = [
        {"query_id": q, "sample_idx": k, "trajectory_id": f"{q}{k}", "spans": [_span("plan", 2), _span("report", 3)]}
        for q in ("a", "b")
        for k in range(2)
    ]
    rewards = [
        {"trajectory_id": "a0", "reward": 0.8},
        {"trajectory_id": "a1", "reward": 0.2},
        {"trajectory_id": "b0", "reward": 0.0},
        {"trajectory_id": "b1", "reward": 0.0},
    ]  # b is flat
    rubrics = [{"query_id": "a", "rubric_idx": j, "span": _span("rubric", 4)} for j in range(2)]
    ev = [{"query_id": "a", "rubric_idx": 0, "reward": 1.0}, {"query_id": "a", "rubric_idx": 1, "reward": 0.5}]
    rows, counts = build_samples(0, TrainInputs(reports, rewards, rubrics, ev), TrainConfig(), flat=0.02)
    assert counts == {
        "solver_groups": 2,
        "solver_flat_groups": 1,
        "evaluator_groups": 1,
        "evaluator_flat_groups": 0,
        "judgement_samples_left_out": 0,
        "verdict_samples_left_out": 0,
    }
    solver = [(r["source_id"], r["span"], round(r["advantage"], 6)) for r in rows if r["role"] == "solver"]
    assert solver == [("a0", "plan", 1.0), ("a0", "report", 1.0), ("a1", "plan", -1.0), ("a1", "report", -1.0)]
    evaluator = [(r["source_id"], round(r["advantage"], 6)) for r in rows if r["role"] == "evaluator"]
    assert evaluator == [("rubric-0", 1.0), ("rubric-1", -1.0)]
    assert all(
        r["prompt"].startswith("<") and r["token_ids"] for r in rows
    )  # prompt kept apart from the written tokens
    no_plan, _ = build_samples(
        0, TrainInputs(reports, rewards, rubrics, ev), TrainConfig(train_plan=False, role_weight={"evaluator": 0}), 0.02
    )
    assert [r["span"] for r in no_plan] == ["report", "report"]
    dr_grpo, _ = build_samples(0, TrainInputs(reports, rewards), TrainConfig(normalize_std=False), flat=0.02)
    assert [round(r["advantage"], 6) for r in dr_grpo] == [0.3, 0.3, -0.3, -0.3]


def test_judgements_train_in_groups_per_query_and_reward_kind_with_their_shared_prefix():
    """A query's judgements of its reports form one group (consistency), its judgements of corrupted copies
    another (probe credit); unrewarded judgements give nothing; a group with std at the flat threshold is flat."""

    def judgement(q, tid, kind, p, dim, reward_kind, reward):
        return {
            "query_id": q,
            "trajectory_id": tid,
            "probe_kind": kind,
            "pass_idx": p,
            "dimension": dim,
            "criterion": "c",
            "span": _span("judgement", 1, prefix=f"<report {tid}{kind} pass {p}>"),
            "rationale_span": None,
            "reward_kind": reward_kind,
            "reward": reward,
        }

    judged = [
        judgement("a", f"a{k}", "", p, d, "consistency", 0.2 * k + 0.1 * p)
        for k in range(2)
        for p in range(2)
        for d in ("insight", "readability")
    ]
    judged += [judgement("a", "a0", "strip_citations", p, "citation_support", "probe", float(p)) for p in range(2)]
    judged += [judgement("a", "a0", "strip_citations", 0, "readability", "", None)]  # not a damaged dimension
    judged += [judgement("b", f"b{k}", "", 0, "insight", "consistency", 0.5) for k in range(2)]  # flat
    rows, counts = build_samples(0, TrainInputs(judgements=judged), TrainConfig(), flat=0.02)
    assert counts["evaluator_groups"] == 3 and counts["evaluator_flat_groups"] == 1
    assert len(rows) == 8 + 2 and {r["span"] for r in rows} == {"judgement"}
    consistency = [r["advantage"] for r in rows if "strip" not in r["source_id"]]
    assert len(set(round(a, 6) for a in consistency)) == 4  # not sign-only: 8 members, 4 distinct rewards
    assert abs(sum(consistency)) < 1e-9 and all(r["prefix"].startswith("<report") for r in rows)
    assert all(r["temperature"] == 0.8 for r in rows)
    capped, counts = build_samples(0, TrainInputs(judgements=judged), TrainConfig(judgement_prefixes=1), flat=0.02)
    assert len({r["prefix"] for r in capped if "strip" not in r["source_id"]}) == 1  # one report prefix kept
    assert counts["judgement_samples_left_out"] == len(rows) - len(capped) > 0


def test_verdicts_train_in_pairs_with_their_anchor_grouped_per_query():
    """A checked claim with an anchor gives two samples (claim, anchor) sharing the passages' prefix, rewarded by the
    pair's credit; a claim without an anchor, or a pair with an unrewarded side, gives none."""

    def check(q, tid, i, reward, anchor_reward, anchor=True):
        prefix = f"<passages {tid} {i}>"
        return {
            "query_id": q,
            "trajectory_id": tid,
            "probe_kind": "",
            "deeper": False,
            "claim_idx": i,
            "span": _span("verdict", 1, prefix=prefix),
            "reward": reward,
            "anchor_span": _span("verdict", 1, prefix=prefix) if anchor else None,
            "anchor_reward": anchor_reward,
            "followup_span": None,
            "followup_reward": None,
        }

    evidence = [check("a", "a0", 0, 1.0, 1.0), check("a", "a0", 1, 0.5, 0.5), check("a", "a1", 0, None, -1.0)]
    evidence += [check("a", "a1", 1, None, None, anchor=False)]  # no anchor: not trained
    evidence += [check("b", "b0", 0, 0.5, 0.5), check("b", "b1", 0, 0.5, 0.5)]  # b: a judge that answers alike
    rows, counts = build_samples(0, TrainInputs(evidence=evidence), TrainConfig(), flat=0.02)
    assert counts["evaluator_groups"] == 2 and counts["evaluator_flat_groups"] == 1
    assert [r["source_id"] for r in rows] == [
        "a0/report/claim-0",
        "a0/report/claim-0/anchor",
        "a0/report/claim-1",
        "a0/report/claim-1/anchor",
        "a1/report/claim-0/anchor",
    ]
    # an unparsable anchor earns the lowest reward though its claim has nothing to be compared with
    assert {r["span"] for r in rows} == {"verdict"} and abs(sum(r["advantage"] for r in rows)) < 1e-9
    assert rows[0]["prefix"] == rows[1]["prefix"] != rows[2]["prefix"]
    capped, counts = build_samples(0, TrainInputs(evidence=evidence), TrainConfig(verdict_prefixes=1), flat=0.02)
    assert len({r["prefix"] for r in capped}) == 1 and counts["verdict_samples_left_out"] == len(rows) - len(capped)


def test_follow_up_queries_train_grouped_per_query_on_the_separation_they_added():
    """A re-check's follow-up query is a sample of its own (no shared prefix), rewarded by the change of its claim's
    separation from its anchor, normalised among the query's follow-ups; one without a reward gives none."""

    def recheck(q, tid, i, reward):
        return {
            "query_id": q,
            "trajectory_id": tid,
            "probe_kind": "",
            "deeper": True,
            "claim_idx": i,
            "span": None,
            "reward": None,
            "anchor_span": None,
            "anchor_reward": None,
            "followup_span": _span("followup", 1),
            "followup_reward": reward,
        }

    evidence = [recheck("a", "a0", 0, 0.2), recheck("a", "a0", 1, -0.1), recheck("a", "a1", 0, None)]
    rows, counts = build_samples(0, TrainInputs(evidence=evidence), TrainConfig(), flat=0.02)
    assert [(r["source_id"], r["span"]) for r in rows] == [("a0/followup-0", "followup"), ("a0/followup-1", "followup")]
    assert rows[0]["advantage"] > 0 > rows[1]["advantage"] and counts["evaluator_groups"] == 1


def test_masked_and_padded_tokens_get_no_gradient():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.5, -0.5, -2.5]], requires_grad=True)  # (B=2, L=3)
    weights = torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])  # row 0: 1 pad; row 1: 2 masked
    ref = logp.detach() - 0.3
    policy_loss(logp, logp.detach(), ref, torch.tensor([1.0, -2.0]), weights, 0.2, 0.28, 0.1).loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[1, 0] == 0 and logp.grad[1, 1] == 0
    assert (logp.grad[0, 1:] != 0).all() and logp.grad[1, 2] != 0


def test_chunked_log_softmax_gives_the_whole_ones_values_and_gradients(monkeypatch):
    """`token_logprobs` in chunks of 3 positions (checkpointed, remade in backward) against one log_softmax."""
    import score.trainer as trainer

    monkeypatch.setattr(trainer, "LOGSOFTMAX_CHUNK", 3)
    logits = torch.randn(10, 7, generator=torch.Generator().manual_seed(0), dtype=torch.bfloat16, requires_grad=True)
    targets, temps = torch.randint(0, 7, (10,), generator=torch.Generator().manual_seed(1)), torch.full((10,), 0.7)
    whole = torch.log_softmax(logits.float() / 0.7, -1).gather(-1, targets[:, None]).squeeze(-1)
    (grad_whole,) = torch.autograd.grad(whole.sum(), logits)
    chunked = trainer.token_logprobs(logits, targets, temps)
    (grad_chunked,) = torch.autograd.grad(chunked.sum(), logits)
    assert chunked.dtype == torch.float32 and torch.allclose(chunked, whole, atol=1e-6)
    assert torch.allclose(grad_chunked.float(), grad_whole.float(), atol=1e-2)  # bf16 gradients


@pytest.fixture(scope="module")
def trainer_and_batch():
    from score.models import resolve_model_path
    from score.trainer import Trainer, TrainSample, written_logprobs

    cfg = TrainConfig(lr=1e-3, batch_size=4, kl_coef=0.05, lora_rank=8)
    model_cfg = ModelConfig()
    trainer = Trainer(model_cfg, cfg, resolve_model_path(model_cfg), None, seed=0)
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
        logp, mask = written_logprobs(trainer.model, rows, trainer.pad_id, trainer.accelerator.device)
    assert mask.sum(1).tolist() == [len(c) for _, c in rows]  # only the written tokens, right-aligned
    batch = [
        TrainSample("solver", p, c, logp[b, logp.shape[1] - len(c) :].tolist(), adv)
        for b, ((p, c), adv) in enumerate(zip(rows, [1.0, 1.0, -1.0, -1.0]))
    ]
    return trainer, batch


def test_kl_is_zero_before_the_first_update_and_lora_weights_change(trainer_and_batch):
    trainer, batch = trainer_and_batch
    assert trainer.head is trainer.unwrapped.get_output_embeddings()  # the output layer applied in chunks
    lora = {n: p.detach().clone() for n, p in trainer.unwrapped.named_parameters() if "lora_" in n}
    assert lora and all(p.requires_grad == ("lora_" in n) for n, p in trainer.unwrapped.named_parameters())
    [first] = trainer.train(batch, {"solver": 1.0, "evaluator": 0.5}, total_steps=10)
    assert first.kl == 0.0  # the adapter starts at zero (B = 0): policy and reference are the same function
    assert first.ratio_mean == pytest.approx(1.0, abs=1e-4) and first.clip_frac == 0.0
    changed = [n for n, p in trainer.unwrapped.named_parameters() if "lora_B" in n and not torch.equal(p, lora[n])]
    assert changed, "no LoRA weight moved after one step"
    base = [p for n, p in trainer.unwrapped.named_parameters() if "lora_" not in n]
    assert all(p.grad is None for p in base)  # the base model is frozen


@pytest.mark.parametrize("recompute, tis_cap", [(True, 2.0), (False, 2.0)])
def test_recomputed_old_logprobs_make_the_ratio_measure_policy_change_alone(trainer_and_batch, recompute, tis_cap):
    """Samples from an engine with other numerics (every sampler log-prob 0.1 above the trainer's): recomputed,
    the first step's ratio is exactly 1, a later step's is the policy's change alone, the 0.1 gap is logged at
    every step and the importance weight exp(-0.1) scales the gradient; the sampler's own, the ratio is off by it."""
    from dataclasses import replace

    from score.models import resolve_model_path
    from score.trainer import Trainer

    _, batch = trainer_and_batch
    other = [replace(s, old_logprobs=[x + 0.1 for x in s.old_logprobs], advantage=1.0) for s in batch]
    cfg = TrainConfig(lr=1e-3, batch_size=2, lora_rank=8, recompute_old_logprobs=recompute, tis_cap=tis_cap)
    trainer = Trainer(ModelConfig(), cfg, resolve_model_path(ModelConfig()), None, seed=0)
    first, later = trainer.train(other, {"solver": 1.0}, total_steps=2)
    assert first.sampler_gap_mean == pytest.approx(0.1, abs=1e-4) and first.sampler_gap_max < 0.1 + 1e-3
    # every token's weight sums to 1 (grpo, one role) and its advantage is 1: pg is minus the mean weighted ratio
    assert first.pg == pytest.approx(-1.0 if tis_cap is None else -math.exp(-0.1), abs=1e-4)
    if recompute:
        assert first.ratio_mean == 1.0 and first.clip_frac == 0.0
        assert later.sampler_gap_mean == pytest.approx(0.1, abs=1e-4)  # its samples' recomputed before step 0
        assert later.ratio_mean > 1.0  # policy change alone: step 0 raised written tokens' likelihood (A = +1)
    else:
        assert first.ratio_mean == pytest.approx(math.exp(-0.1), abs=1e-4)  # numerics read as policy change
        assert math.isnan(later.sampler_gap_mean) and later.sampler_gap_tokens == 0


def test_training_loss_on_a_fixed_batch_falls(trainer_and_batch):
    trainer, batch = trainer_and_batch
    losses = [trainer.train(batch, {"solver": 1.0, "evaluator": 0.5}, total_steps=10)[0].loss for _ in range(4)]
    print("losses on a fixed batch:", [round(x, 4) for x in losses])
    assert losses[-1] < losses[0] and all(math.isfinite(x) for x in losses)
    assert trainer.train(batch, {"solver": 1.0, "evaluator": 0.5}, total_steps=10)[0].kl > 0  # moved away from the base


def test_checkpoint_is_safetensors_and_resumes_optimizer_state(trainer_and_batch, tmp_path):
    from score.models import resolve_model_path
    from score.trainer import Trainer

    trainer, _ = trainer_and_batch
    files = trainer.save(tmp_path / "ckpt")
    names = sorted(p.name for p in files)
    assert names == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pkl")]
    resumed = Trainer(ModelConfig(), trainer.cfg, resolve_model_path(ModelConfig()), str(tmp_path / "ckpt"), seed=1)
    assert resumed.step == trainer.step
    a = trainer.optimizer.state_dict()["state"]
    b = resumed.optimizer.state_dict()["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k]["exp_avg"], b[k]["exp_avg"]) for k in a)
    for (n1, p1), (n2, p2) in zip(trainer.unwrapped.named_parameters(), resumed.unwrapped.named_parameters()):
        if "lora_" in n1:
            assert n1 == n2 and torch.equal(p1, p2)


def test_the_train_stage_closes_the_loop_on_a_toy_round(toy_workspace):
    import gc

    from score.trainer import Trainer

    ws = toy_workspace
    for stage in ("generate-reports", "self-evaluate", "harness-evolve"):
        run_stage(ws, stage, 0)
    trainers = len([o for o in gc.get_objects() if isinstance(o, Trainer)])  # other tests' fixtures may hold some
    run_stage(ws, "train", 0)
    assert len([o for o in gc.get_objects() if isinstance(o, Trainer)]) == trainers  # the stage's was freed
    folder = stage_folder(ws, "train", 0)
    manifest = ws.store.read_manifest(folder)
    assert {
        "samples.parquet",
        "steps.parquet",
        "checkpoint/adapter_model.safetensors",
        "checkpoint/optimizer.safetensors",
    } <= set(manifest.files)
    assert manifest.peak_rss_mib > 100  # the trainer's copy of the model, at least: every stage records its peak
    stats = manifest.stats
    assert stats["solver_flat_groups"] == stats["solver_groups"] == 2  # the toy writes identical reports
    assert stats["solver_samples"] == 0  # nothing to learn from flat groups, and that is reported
    # identical reports judged alike: consistency groups are flat, only the probes' judgements teach something
    assert stats["samples"] == stats["judgement_samples"] and stats["evaluator_flat_groups"] >= 2
    out = run_stage(ws, "generate-reports", 1)
    checkpoint = ws.store.display(folder, "checkpoint")
    assert out.manifest.inputs["policy"].endswith(upstream_of(ws, 0))
    rows = ws.store.read_table(stage_folder(ws, "generate-reports", 1), "reports.parquet").to_pylist()
    assert {r["checkpoint"] for r in rows} == {checkpoint}


def test_release_closes_every_sampling_backend(toy_workspace):
    ws = toy_workspace
    closed = []
    backend = ws.backend()
    backend.close = lambda: closed.append(backend.checkpoint)
    ws.release()
    assert closed == ["base"] and ws.backend() is not backend  # a new one is built on demand


def upstream_of(ws, r):
    return ws.store.read_manifest(stage_folder(ws, "train", r)).content_fingerprint()


def test_full_fine_tuning_moves_every_layer_and_saves_a_model_folder_the_backend_loads(
    trainer_and_batch, toy_config, tmp_path
):
    from score.checkpoints import Policy
    from score.models import resolve_model_path
    from score.trainer import Trainer
    from score.workspace import Workspace

    _, batch = trainer_and_batch
    cfg = TrainConfig(method="full", lr=1e-5, batch_size=4, kl_coef=0.05)
    trainer = Trainer(ModelConfig(), cfg, resolve_model_path(ModelConfig()), None, seed=0)
    assert trainer.reference is not None  # no adapter to switch off: a frozen copy is the reference
    before = {n: p.detach().clone() for n, p in trainer.unwrapped.named_parameters()}
    [log] = trainer.train(batch, {"solver": 1.0, "evaluator": 0.5}, total_steps=1)
    assert log.kl == 0.0
    moved = [n for n, p in trainer.unwrapped.named_parameters() if not torch.equal(p, before[n])]
    assert any("layers.0." in n for n in moved) and any("layers.29." in n for n in moved)
    files = {p.name for p in trainer.save(tmp_path / "full")}
    assert {
        "model.safetensors",
        "config.json",
        "optimizer.safetensors",
        "trainer_state.json",
        "tokenizer.json",
    } <= files
    backend = Workspace(toy_config).backend(Policy("round-0000/train/checkpoint", str(tmp_path / "full"), "full"))
    assert backend.checkpoint == "round-0000/train/checkpoint"
    name, p = next((n, p) for n, p in trainer.unwrapped.named_parameters() if "layers.0.self_attn.q_proj" in n)
    assert torch.equal(dict(backend.model.named_parameters())[name], p.detach())  # sampling uses the trained weights


def test_a_round_with_no_group_to_learn_from_says_so(toy_workspace, caplog):
    """Flat solver groups and the evaluator switched off: nothing trains, and the stage says it in its statistics
    and its log instead of writing a checkpoint that looks like any other round's."""
    ws = toy_workspace
    ws.cfg.train.role_weight.evaluator = 0.0
    for stage in ("generate-reports", "self-evaluate", "harness-evolve", "train"):
        run_stage(ws, stage, 0)
    stats = ws.store.read_manifest(stage_folder(ws, "train", 0)).stats
    assert stats["samples"] == 0 and stats["steps"] == 0 and stats["trained_nothing"] is True
    assert stats["untrained_roles"] == ["solver"] and stats["evaluator_update_share"] is None
    assert stats["note"].startswith("the solver trained on nothing (all ") and "unchanged" in stats["note"]
    assert "round 0: the solver trained on nothing" in caplog.text


def test_inspect_leads_with_an_untrained_round_and_the_campaign_stops_after_enough_of_them(toy_workspace):
    """`score inspect` says first that the solver learned nothing; with campaign.max_untrained_rounds 1 the
    campaign stops after such a round, naming why and how to go on (2: it needs two rounds running; 0: never)."""
    from rich.console import Console

    from score.history import stop_reason
    from score.inspection import show_round

    ws = toy_workspace
    ws.cfg.train.role_weight.evaluator = 0.0
    for stage in ("generate-reports", "self-evaluate", "harness-evolve", "train"):
        run_stage(ws, stage, 0)
    console = Console(record=True, width=200)
    show_round(console, ws.store, ws.cfg.run, 0)
    assert console.export_text().splitlines()[0].startswith("round 0 train: the solver trained on nothing")
    assert stop_reason(ws, 0) == ""  # the default needs two rounds running
    ws.cfg.campaign.max_untrained_rounds = 0
    assert stop_reason(ws, 0) == ""
    ws.cfg.campaign.max_untrained_rounds = 1
    why = stop_reason(ws, 0)
    assert why.startswith(f"campaign {ws.cfg.run} stopped after round 0: the solver trained on nothing in rounds 0-0")
    assert "campaign.max_untrained_rounds=0" in why


def test_every_long_phase_of_a_round_logs_its_progress_once_at_its_end(toy_workspace, caplog, monkeypatch):
    """What the terminal and the Prefect UI get while a round runs (a line every LOG_EVERY_S seconds: here every
    update): the research turns with the stage's trajectories finished and an upper bound on the time left, the
    evidence checks and the judging with their counts, the train stage's samples; each phase's last line once."""
    import score.progress

    monkeypatch.setattr(score.progress, "LOG_EVERY_S", 0.0)
    ws = toy_workspace
    with caplog.at_level("INFO"):
        for stage in ("generate-reports", "self-evaluate", "harness-evolve", "train"):
            run_stage(ws, stage, 0)
    lines = [r.getMessage() for r in caplog.records if r.name in ("score.progress", "score.agent")]
    assert "round 0 research: turn 1 of at most 4, 0/4 trajectories finished" in lines[0]
    assert "s so far, at most about" in lines[0]
    assert any(line.startswith("round 0 research: turn ") and "4/4 trajectories finished in" in line for line in lines)
    for phase, unit in (("evidence", "claim"), ("judging", "report"), ("train", "sample")):
        done = [line for line in lines if line.startswith(f"round 0 {phase}: ") and "(100%)" in line]
        assert len(done) == 1 and f" {unit} (100%)" in done[0], (phase, done)
    progress = [line for line in lines if line.startswith("round 0 train: ")]
    assert len(progress) == len(set(progress))  # while it runs, then done: never the same line twice
