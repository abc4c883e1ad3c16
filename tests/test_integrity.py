"""Nothing damaged is trusted: a stage folder whose files no longer match its manifest is redone, never read; the
trainer stops at the first non-finite number; config floats are finite."""

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from score.config import ConfigError, load_config
from score.runner import run_stage, stage_folder
from score.store.schemas import SCHEMAS, ArtifactError


def _path(ws, stage, name):
    return ws.store.path(stage_folder(ws, stage, 0), name)


def _evaluated(ws):
    for stage in ("generate-reports", "self-evaluate"):
        run_stage(ws, stage, 0)


def test_tampered_rewards_are_redone_not_read(toy_workspace):
    """solver_rewards.parquet rewritten with other rewards (same schema): every reader refuses it by name, and the
    next run of its stage redoes it instead of skipping on the matching fingerprint."""
    ws = toy_workspace
    _evaluated(ws)
    path = _path(ws, "self-evaluate", "solver_rewards.parquet")
    honest = pq.read_table(path)
    forged = honest.set_column(
        honest.schema.get_field_index("reward"), "reward", pa.array([0.99] * honest.num_rows, pa.float64())
    )
    pq.write_table(forged.cast(SCHEMAS["solver_rewards.parquet"]), path)
    with pytest.raises(ArtifactError, match="solver_rewards.parquet changed after its manifest was written"):
        ws.store.read_table(stage_folder(ws, "self-evaluate", 0), "solver_rewards.parquet")
    with pytest.raises(
        ArtifactError, match=r"evaluate: solver_rewards.parquet (has \d+ bytes|changed).*`score run` redoes"
    ):
        run_stage(ws, "harness-evolve", 0)  # an upstream folder that is not intact is never used
    redone = run_stage(ws, "self-evaluate", 0)
    assert not redone.skipped
    assert pq.read_table(path).column("reward").to_pylist() == honest.column("reward").to_pylist()  # seeded: same
    assert not run_stage(ws, "harness-evolve", 0).skipped
    assert run_stage(ws, "self-evaluate", 0).skipped  # intact again: skipped as before


def test_a_rerun_refused_late_keeps_the_finished_stage(toy_workspace):
    """A forced rerun of a finished train stage whose config only the model can refuse (a LoRA target it does not
    have) fails before it writes anything, so the round's checkpoint, its other files and its manifest are all
    still there, intact; a config refused at load (AdamW's beta 1.5) never reaches the stage."""
    ws = toy_workspace
    for stage in ("generate-reports", "self-evaluate", "harness-evolve", "train"):
        run_stage(ws, stage, 0)
    folder = stage_folder(ws, "train", 0)
    finished = ws.store.read_manifest(folder)
    with pytest.raises(ValueError, match=r"betas must each be in \[0, 1\)"):
        ws.cfg.train.betas = (1.5, 0.999)
    ws.cfg.train.target_modules = ["no_such_proj"]
    with pytest.raises(ConfigError, match=r"train.target_modules \['no_such_proj'\] are not linear layers"):
        run_stage(ws, "train", 0, force=True)
    assert ws.store.read_manifest(folder) == finished and not ws.store.verify(folder, finished)
    assert any(name.startswith("checkpoint/") for name in finished.files)


def test_a_truncated_or_missing_file_is_redone(toy_workspace, caplog):
    ws = toy_workspace
    run_stage(ws, "generate-reports", 0)
    path = _path(ws, "generate-reports", "reports.parquet")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with caplog.at_level("WARNING"):
        assert not run_stage(ws, "generate-reports", 0).skipped
    assert f"reports.parquet has {len(data) // 2} bytes where its manifest says {len(data)}" in caplog.text
    assert open(path, "rb").read() == data  # seeded sampling: the same bytes again
    ws.store.fs.rm_file(path)
    assert not run_stage(ws, "generate-reports", 0).skipped  # sizes are checked every time


def test_a_damaged_checkpoint_is_not_sampled_from(toy_workspace, tmp_path):
    """Round 1 samples from round 0's checkpoint only if its files are those the train manifest lists."""
    from score.history import policy_for_round
    from score.store.layout import stage_dir
    from score.store.manifest import FolderWriter, Manifest

    ws = toy_workspace
    folder = stage_dir(ws.cfg.run, 0, "train")
    local = tmp_path / "ckpt"
    local.mkdir()
    (local / "adapter_config.json").write_text("{}")
    (local / "adapter_model.safetensors").write_bytes(b"weights")
    writer = FolderWriter(ws.store, folder)
    for p in local.iterdir():
        writer.file(f"checkpoint/{p.name}", p)
    ws.store.write_manifest(folder, Manifest(stage="train", fingerprint="x", files=writer.files))
    assert policy_for_round(ws, 1).kind == "lora"
    (tmp_path / "tampered").write_bytes(b"other!!")
    ws.store.fs.put_file(str(tmp_path / "tampered"), ws.store.path(folder, "checkpoint/adapter_model.safetensors"))
    ws.store._verified.clear()  # same size, other bytes: found by the hash of a process that has not hashed it yet
    with pytest.raises(ArtifactError, match="checkpoint/adapter_model.safetensors changed after its manifest"):
        policy_for_round(ws, 1)


@pytest.mark.parametrize("key", ["train.lr", "train.max_grad_norm", "train.kl_coef", "reward.probe_weight"])
@pytest.mark.parametrize("value", [".inf", ".nan"])
def test_config_floats_must_be_finite(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [f"{key}={value}"])


def test_the_trainer_stops_at_a_non_finite_loss_and_writes_nothing():
    from score.config import ModelConfig, TrainConfig
    from score.models import resolve_model_path
    from score.trainer import Trainer, TrainSample

    trainer = Trainer(ModelConfig(), TrainConfig(lora_rank=4), resolve_model_path(ModelConfig()), None, seed=0)
    ids = trainer.tokenizer("Solar panels turn sunlight into power.", add_special_tokens=False)["input_ids"]
    sample = TrainSample("solver", ids[:3], ids[3:], [-1.0] * len(ids[3:]), advantage=1.0)
    before = {n: p.detach().clone() for n, p in trainer.unwrapped.named_parameters() if p.requires_grad}
    broken = [sample, dataclasses.replace(sample, advantage=float("nan"))]
    with pytest.raises(FloatingPointError, match="not finite; stopped, no checkpoint written"):
        trainer.train(broken, {"solver": 1.0, "evaluator": 1.0}, total_steps=1)
    after = dict(trainer.unwrapped.named_parameters())
    assert all(bool((after[n] == p).all()) for n, p in before.items())  # the update never happened


@pytest.mark.parametrize("status", [401, 200])
@pytest.mark.parametrize("variable", ["SCORE_TEST_API_KEY", "LLM_CREDENTIAL"])
def test_an_endpoint_that_echoes_the_key_leaks_nothing(monkeypatch, caplog, status, variable):
    """A proxy that echoes the request headers and the bare key, in an error (401) or in an answer without choices
    (200): the key reaches neither the error nor the logs, whatever the variable holding it is called."""
    import http.server
    import json
    import threading

    from score.models import Message
    from score.models.openai_client import ChatClient, EndpointError

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            bare = self.headers["Authorization"].removeprefix("Bearer ")
            body = json.dumps({"error": "bad key", "headers": dict(self.headers), "key": bare}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key = "sk-live-0123456789abcdef"
    monkeypatch.setenv(variable, key)
    client = ChatClient(f"http://127.0.0.1:{server.server_port}/v1", "m", api_key_env=variable)
    try:
        with caplog.at_level("DEBUG"), pytest.raises(EndpointError) as e:
            client.chat([Message("user", "hello")])
    finally:
        server.shutdown()
    assert "bad key" in str(e.value)  # the answer is quoted, the key is not
    assert key not in str(e.value) and key[-8:] not in str(e.value) and key not in caplog.text


def _hold_in_subprocess(root: str, run: str, lease_seconds: float = 60):
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "from score.store.store import Store\nfrom score.config import StoreConfig\n"
        "from score.store.lease import holding\n"
        f"with holding(Store(StoreConfig(root={root!r}, lease_seconds={lease_seconds})), {run!r}):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_one_writer_per_run_and_a_killed_holder_frees_it(toy_workspace):
    import time

    from score.store.lease import LEASE, RunLocked, lease_state

    ws = toy_workspace
    assert lease_state(ws.store, ws.cfg.run) == "idle"
    holder = _hold_in_subprocess(ws.cfg.store.root, ws.cfg.run, lease_seconds=1)
    try:
        time.sleep(2.5)  # well past one lease period: the holder renews it
        assert lease_state(ws.store, ws.cfg.run).startswith("writing (")  # what `score runs` shows
        with pytest.raises(RunLocked, match=rf"run 'toy' in .* is being written by [^:]+:{holder.pid}:"):
            run_stage(ws, "generate-reports", 0)
        assert not ws.store.fs.exists(ws.store.path(stage_folder(ws, "generate-reports", 0)))  # nothing written
    finally:
        holder.kill()
        holder.wait()
    assert lease_state(ws.store, ws.cfg.run) == "stopped without ending"
    assert not run_stage(ws, "generate-reports", 0).skipped  # a dead local holder binds no more
    assert not ws.store.fs.exists(ws.store.path(ws.cfg.run, LEASE))  # released after the stage
    assert lease_state(ws.store, ws.cfg.run) == "idle"


def test_a_lease_of_another_host_binds_until_it_expires(toy_workspace):
    import json
    import time

    from score.store.lease import LEASE, RunLocked

    ws = toy_workspace
    path = ws.store.path(ws.cfg.run, LEASE)
    ws.store.fs.makedirs(ws.store.path(ws.cfg.run), exist_ok=True)
    lease = {"holder": "elsewhere:123:abcd1234", "since": "2026-11-28T00:00:00+00:00", "expires": time.time() + 1.5}
    ws.store.fs.pipe_file(path, json.dumps(lease).encode())
    with pytest.raises(RunLocked, match="elsewhere:123:abcd1234.*expires in [12] s"):
        run_stage(ws, "generate-reports", 0)
    time.sleep(1.6)
    assert not run_stage(ws, "generate-reports", 0).skipped


def test_a_checkpoint_folder_is_named_by_every_file_that_defines_it(toy_workspace, tmp_path):
    """A user's checkpoint folder: its label (and the fingerprint of what is evaluated with it) moves when any
    file moves, not only the safetensors (an adapter config changes the model as much as its weights)."""
    import torch
    from safetensors.torch import save_file

    from score.checkpoints import CheckpointError
    from score.history import resolve

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"r": 8}')
    save_file({"w": torch.zeros(2)}, folder / "adapter_model.safetensors")
    label, policy = resolve(toy_workspace, str(folder))
    (folder / "adapter_config.json").write_text('{"r": 16}')
    label2, policy2 = resolve(toy_workspace, str(folder))
    assert label.startswith("folder-") and label != label2 and policy.fingerprint != policy2.fingerprint
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="adapter_config.json is not valid JSON"):
        resolve(toy_workspace, str(folder))
    full = tmp_path / "full"  # a full model folder: config.json and weights of any name
    full.mkdir()
    (full / "config.json").write_text("{}")
    save_file({"step": torch.zeros(1)}, full / "optimizer.safetensors")
    with pytest.raises(CheckpointError, match=r"has config.json but no weights \(\*.safetensors\)"):
        resolve(toy_workspace, str(full))
    save_file({"w": torch.zeros(2)}, full / "model-00001-of-00002.safetensors")
    assert resolve(toy_workspace, str(full))[1].kind == "full"


def test_only_the_runs_own_flow_runs_are_ever_marked_crashed():
    """A later writer of run `ci` ends `ci`'s leftover flow runs, never those of a run whose name starts alike
    (an ablation's `ci-static` arm may be running in another process)."""
    from flows.common import _of_run

    assert _of_run("ci-campaign", "ci") and _of_run("ci-round-0003", "ci") and _of_run("ci-round-0000-train", "ci")
    assert not _of_run("ci-static-round-0000", "ci") and not _of_run("ci-static-campaign", "ci")
    assert not _of_run("ci-ablate", "ci") and not _of_run("ci.x-campaign", "ci")


def test_the_target_module_check_reads_the_models_layers_from_the_cache_after_the_first_run(tmp_path, monkeypatch):
    """`score run` checks train.target_modules before any work: the model's linear layers are built once on the
    meta device (seconds of imports), then read from the cache by its config.json's bytes; another config, another
    entry."""
    import json
    import shutil

    import score.models as models
    from score.models.embedded import ensure_embedded_model

    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(ensure_embedded_model() / "config.json", folder / "config.json")
    built = models.linear_layers(folder, tmp_path / "cache")
    assert {"q_proj", "down_proj", "lm_head"} <= set(built)
    monkeypatch.setattr(models, "meta_model", lambda config: pytest.fail("built again: the cache was not read"))
    assert models.linear_layers(folder, tmp_path / "cache") == built
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"num_hidden_layers": 1}))
    with pytest.raises(pytest.fail.Exception, match="built again"):  # other bytes: built, not read
        models.linear_layers(folder, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "linear-layers").glob("*.json"))) == 1
