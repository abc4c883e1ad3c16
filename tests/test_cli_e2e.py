"""The `score` CLI end to end: real Prefect flows, the real model, real Parquet (marked slow), and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import copy_stages, error_lines

from score.store.schemas import REPORTS_SCHEMA

ROOT = Path(__file__).resolve().parents[1]


def score(*args: str, timeout: int = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "score.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or os.environ.copy(),
    )


def train0_version(store: Path) -> str:
    from score.store.manifest import Manifest

    return Manifest.from_json(
        (store / "ci" / "round-0000" / "train" / "_manifest.json").read_text()
    ).content_fingerprint()


def manifest(store: Path, round_idx: int, folder: str = "generate") -> dict | None:
    path = store / "ci" / f"round-{round_idx:04d}" / folder / "_manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def orphaned_servers() -> list[str]:
    """Temporary Prefect servers of this test session's PREFECT_HOME whose parent is gone."""
    home = os.environ["PREFECT_HOME"].encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (
                b"prefect.server.api.server:create_app" in (proc / "cmdline").read_bytes()
                and home in (proc / "environ").read_bytes()
            ):
                found.append(proc.name)
        except OSError:
            continue
    return found


def assert_first_step_on_policy(store):
    """Round 1's spans of every kind, sampled with round 0's adapter, retrained from that checkpoint: the first
    step's importance ratio is 1 and nothing is clipped (the stored log-probs are those of the distribution each
    span was sampled from, at its temperature; judgements and verdicts through the shared-prefix packing)."""
    from transformers import AutoTokenizer

    from score.config import ModelConfig, TrainConfig
    from score.models import resolve_model_path
    from score.trainer import Trainer, TrainSample

    round1 = store / "ci" / "round-0001"
    spans = [s for r in pq.read_table(round1 / "generate" / "reports.parquet").to_pylist() for s in r["spans"]]
    spans += [r["span"] for r in pq.read_table(round1 / "evaluate" / "rubrics.parquet").to_pylist()]
    spans += [r["span"] for r in pq.read_table(round1 / "evaluate" / "judgement_spans.parquet").to_pylist()][:24]
    evidence = pq.read_table(round1 / "evaluate" / "evidence.parquet").to_pylist()
    spans += [s for e in evidence for s in (e["span"], e["anchor_span"]) if s][:24]
    spans += [e["followup_span"] for e in evidence if e["followup_span"]]  # re-checks are drawn: maybe none
    checkpoint = str(store / "ci" / "round-0000" / "train" / "checkpoint")
    path = resolve_model_path(ModelConfig())
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    kinds = ["trajectory", "rubric", "judgement", "verdict"]  # the react agent's turns and tool outputs: one span
    for kind in kinds + (["followup"] if any(s["name"] == "followup" for s in spans) else []):
        trainer = Trainer(ModelConfig(), TrainConfig(batch_size=64), path, checkpoint, 0)
        samples = [
            TrainSample("evaluator", ids(s["prompt"]), s["token_ids"], s["logprobs"], 1.0,
                        temperature=s["temperature"], prefix_ids=ids(s["prefix"]) if s["prefix"] else [],
                        mask=s["mask"], choices=s["choices"])
            for s in spans if s["name"] == kind and s["token_ids"]
        ]  # fmt: skip
        assert samples, kind
        [first] = trainer.train(samples, {"solver": 1.0, "evaluator": 1.0}, total_steps=1)
        print(f"round 1 {kind}: {len(samples)} spans, first-step ratio {first.ratio_mean:.6f}, clip {first.clip_frac}")
        assert first.ratio_mean == pytest.approx(1.0, abs=1e-3) and first.clip_frac == 0.0, kind


def assert_trackers_hold_the_manifests_numbers(store: Path, mlflow_url: str) -> None:
    """Every finished stage's numbers, per round, in MLflow's run `ci` and in the TensorBoard event files, equal to
    what the stage manifests hold; the train stage's optimizer steps at their global step."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from score.tracking import numbers

    expected = {}  # (key, step) -> value
    for r in (0, 1):
        for folder, stage in (("generate", "generate-reports"), ("evaluate", "self-evaluate"),
                              ("harness", "harness-evolve"), ("train", "train")):  # fmt: skip
            for key, value in numbers(manifest(store, r, folder)["stats"], stage).items():
                expected[(key, r)] = value
        for step in pq.read_table(store / "ci" / f"round-{r:04d}" / "train" / "steps.parquet").to_pylist():
            expected[("train/step/loss", step["step"])] = step["loss"]
    client = MlflowClient(tracking_uri=mlflow_url)
    [run] = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    assert run.info.run_name == "ci" and run.data.params["generate.report_tokens"] == "48"
    events = EventAccumulator(str(store / "ci" / "tensorboard"))
    events.Reload()
    for (key, step), value in expected.items():
        logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        assert logged[step] == pytest.approx(value, rel=1e-6), (key, step)
        assert {e.step: e.value for e in events.Scalars(key)}[step] == pytest.approx(value, rel=1e-6), (key, step)
    assert any(a.path.startswith("plots") for a in client.list_artifacts(run.info.run_id))
    assert "plots/reward" in events.Tags()["images"]
    print(f"trackers: {len(expected)} (statistic, step) values in MLflow and TensorBoard equal the manifests'")


def prefect_read(env: dict[str, str], method: str, **kwargs) -> list:
    """Read from the Prefect server of `env` (its API URL) with Prefect's client, in this process."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        with get_client(sync_client=True) as client:
            return getattr(client, method)(**kwargs)


def assert_rerun_labelled_skipped_and_tagged(env: dict[str, str], published: int) -> None:
    """The rerun's stage (and plot) task runs are Completed, named Skipped; it published no artifact; every flow run
    carries its run, round and config tags."""
    tasks = sorted(prefect_read(env, "read_task_runs"), key=lambda t: t.created)
    for name in ("generate-reports", "self-evaluate", "harness-evolve", "train", "plots"):
        for r in (0, 1):
            runs = [t for t in tasks if t.name == f"{name}-r{r:04d}"]
            assert [t.state.name for t in runs] == ["Completed", "Skipped"], (name, r)
            assert runs[-1].state.type.value == "COMPLETED"
    assert len(prefect_read(env, "read_artifacts")) == published  # a resume republishes nothing
    flows = prefect_read(env, "read_flow_runs")
    for f in flows:
        assert {"run:ci", "config:ci"} <= set(f.tags), (f.name, f.tags)
        if "-round-" in f.name:
            assert f"round:{int(f.name.rsplit('-', 1)[1])}" in f.tags, (f.name, f.tags)
    print(f"rerun: every stage Skipped, {published} artifacts before and after; tags {sorted(flows[0].tags)}")


@pytest.mark.slow
def test_campaign_writes_reports_then_skips_everything_on_rerun(ci_campaign, mlflow_url):
    """On a real Prefect server, with MLflow (a real server) and TensorBoard on (the session's campaign): the
    campaign, what the trackers hold, then a rerun that redoes nothing, labels its stages Skipped and publishes no
    artifact."""
    store, env, tracked = ci_campaign.store, ci_campaign.env, ci_campaign.tracked
    for r in (0, 1):
        folder = store / "ci" / f"round-{r:04d}" / "generate"
        table = pq.read_table(folder / "reports.parquet")
        assert table.schema.equals(REPORTS_SCHEMA)
        rows = table.to_pylist()
        by_query: dict[str, int] = {}
        for row in rows:
            by_query[row["query_id"]] = by_query.get(row["query_id"], 0) + 1
            assert row["agent"] == "react" and row["turns"]  # the react agent: its turns, each call and its output
            assert row["answered"] == (row["finish_reason"] in ("stop", "length"))  # else cut, with no report
            assert row["finish_reason"] != "cut" or not row["report"]
            assert row["checkpoint"] == ("base" if r == 0 else f"{store}/ci/round-0000/train/checkpoint")
        assert list(by_query.values()) == [2]  # K=2 reports of the round's one query
        print(f"round {r}: {sum(bool(x['cited']) for x in rows)}/{len(rows)} reports cite a source")
        assert manifest(store, r)["files"]["reports.parquet"]["rows"] == 2
        for stage in ("evaluate", "harness", "train"):
            assert manifest(store, r, stage) is not None
    for label in ("base", "round-0000", "round-0001"):  # every checkpoint measured on the held-out questions
        held = json.loads((store / "ci" / "heldout" / label / "_manifest.json").read_text())["stats"]
        assert held["queries"] == held["reports"] == 2 and held["checkpoint"] == label
        train0 = manifest(store, 0, "train")
    print("round 0 train:", train0["stats"])
    assert train0["stats"]["samples"] > 0 and train0["stats"]["steps"] > 0
    assert manifest(store, 1)["inputs"]["policy"].endswith(train0_version(store))
    from safetensors.torch import load_file

    adapter = load_file(store / "ci" / "round-0000" / "train" / "checkpoint" / "adapter_model.safetensors")
    assert any(
        "lora_B" in k and v.abs().max() > 0 for k, v in adapter.items()
    )  # trained away from the base (B starts at 0)
    rubrics = pq.read_table(store / "ci" / "round-0001" / "evaluate" / "rubrics.parquet").to_pylist()
    assert {r["harness_version"] for r in rubrics} == {0}  # round 1 judged under the harness round 0 wrote
    from score.config import load_config
    from score.runner import stage_folder
    from score.workspace import Workspace

    ws = Workspace(load_config(ROOT / "configs" / "ci.yaml", [f"store.root={store}"]))
    assert (
        manifest(store, 1, "evaluate")["inputs"]["harness"]
        == ws.store.read_manifest(stage_folder(ws, "harness-evolve", 0)).content_fingerprint()
    )  # round 0's harness content

    assert_first_step_on_policy(store)
    assert_trackers_hold_the_manifests_numbers(store, mlflow_url)
    published = len(prefect_read(env, "read_artifacts"))

    before = {r: manifest(store, r)["started_at"] for r in (0, 1)}
    trained = manifest(store, 1, "train")["started_at"]
    t0 = time.perf_counter()
    again = score("run", "-c", "configs/ci.yaml", "--set", f"store.root={store}", *tracked, env=env)
    print(f"first run {ci_campaign.seconds:.0f} s, rerun {time.perf_counter() - t0:.0f} s")
    assert again.returncode == 0, again.stderr[-3000:]
    assert {r: manifest(store, r)["started_at"] for r in (0, 1)} == before  # nothing redone
    assert manifest(store, 1, "train")["started_at"] == trained
    assert_rerun_labelled_skipped_and_tagged(env, published)


@pytest.mark.slow
def test_sigkill_during_training_then_rerun_resumes_without_redoing_finished_stages(tmp_path, ci_campaign):
    """Round 0 sampled and judged (copied from the session's campaign), its training killed, then resumed."""
    store = copy_stages(ci_campaign, tmp_path / "store", {0: ("generate", "evaluate", "harness")})
    log = tmp_path / "stderr.txt"
    args = ("run", "-c", "configs/ci.yaml", "--set", f"store.root={store}", "--rounds", "1")
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 1))  # Prefect stores UTC
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "score.cli", *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        deadline = time.time() + 600
        while "round 0 train" not in log.read_text() and time.time() < deadline:  # the optimizer is stepping
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        other = ("--set", "generate.temperature=0.7")  # a second writer of the same run, another config
        second = score(*args, *other, timeout=300)
        assert second.returncode == 2 and "is being written by" in second.stderr, second.stderr[-2000:]
        assert proc.poll() is None  # the first goes on
        os.kill(proc.pid, signal.SIGKILL)  # the CLI only: its temporary Prefect server lives on, orphaned
        proc.wait()
    try:
        done = {folder: manifest(store, 0, folder) for folder in ("generate", "evaluate", "harness")}
        assert all(done.values()) and manifest(store, 0, "train") is None  # training unfinished: invisible
        assert orphaned_servers(), "the SIGKILL should have orphaned the temporary Prefect server"
        rerun = score(*args)  # at once: the killed holder's lease binds no more
    finally:
        from flows.env import reap_orphaned_servers

        reap_orphaned_servers()  # never leave a server behind, even when an assertion failed

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for folder, m in done.items():
        assert manifest(store, 0, folder)["started_at"] == m["started_at"]  # finished stages not redone
    assert manifest(store, 0, "train") is not None  # one round: resuming into round 1 is the S3 test's
    assert (store / "ci" / "round-0000" / "train" / "checkpoint").is_dir()
    assert not [p for p in (store / "ci").rglob(".tmp-*")]
    assert orphaned_servers() == []  # the rerun stopped the orphan
    states = prefect_states(killed_after=started)
    assert states and all(state != "RUNNING" for _, state, _ in states), states  # the killed runs were ended
    assert any(state == "CRASHED" and "stopped without ending it" in (why or "") for _, state, why in states), states


@pytest.mark.slow
def test_sigterm_stops_a_campaign_within_seconds_and_leaves_nothing_running(tmp_path):
    """What a scheduler or a preempted pod sends: the campaign unwinds as on Ctrl-C, its lease released, its flow
    runs ended, its temporary Prefect server stopped; exit 143 with one line saying how to resume."""
    store, log = tmp_path / "store", tmp_path / "stderr.txt"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 1))
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "score.cli", "run", "-c", "configs/ci.yaml", "--set", f"store.root={store}"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        deadline = time.time() + 600
        while "round 0 turn" not in log.read_text() and time.time() < deadline:  # generate-reports is sampling
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        t0 = time.time()
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=60)
    try:
        assert code == 143 and time.time() - t0 < 60, log.read_text()[-3000:]
        assert "stopped by SIGTERM: finished stages are kept" in log.read_text()
        assert not (store / "ci" / "_lease.json").exists()  # released: a rerun starts at once
        assert orphaned_servers() == []
        assert not [p for p in store.rglob(".tmp-*")] and not list(store.rglob("_manifest.json"))
        states = prefect_states(killed_after=started)
        assert states and all(state != "RUNNING" for _, state, _ in states), states
    finally:
        from flows.env import reap_orphaned_servers

        reap_orphaned_servers()


def prefect_states(killed_after: str) -> list[tuple[str, str, str | None]]:
    """(name, state, message) of the ci flow runs created after `killed_after`, from Prefect's database (the
    tests' PREFECT_HOME; `score run` starts its temporary server on it)."""
    import sqlite3

    db = sqlite3.connect(Path(os.environ["PREFECT_HOME"]) / "prefect.db")
    return db.execute(
        "select flow_run.name, flow_run.state_type, flow_run_state.message from flow_run "
        "left join flow_run_state on flow_run.state_id = flow_run_state.id "
        "where flow_run.name like 'ci-%' and flow_run.created > ?",
        (killed_after,),
    ).fetchall()


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--set", "generate.samples_per_query=1"], "set generate.samples_per_query"),
        (["run", "--set", "run=../up"], "run name"),
        (["run", "--set", "bogus.key=1"], "unknown config key 'bogus'"),
        (
            ["run", "--set", "search.corpus=/nonexistent/corpus.parquet"],
            "corpus /nonexistent/corpus.parquet does not exist",
        ),
        (["run", "--set", "data.queries=/nonexistent/q.csv"], "queries file /nonexistent/q.csv does not exist"),
        (["run", "--set", "data.queries=/no/q[/b][old].csv"], "queries file /no/q[/b][old].csv does not exist"),
        (["run", "--set", "model.path=/nonexistent/model"], "model.path /nonexistent/model does not exist"),
        (["run", "--set", "model.device=cuda:0"], "model.device cuda:0: this machine has no CUDA device"),
        (
            [
                "run",
                "--set",
                "store.root=s3://b/p",
                "--set",
                "store.storage_options={endpoint_url: 'http://127.0.0.1:9'}",
            ],
            "cannot use store s3://b/p",
        ),
        (["stage", "no-such-stage", "--round", "0"], "unknown stage 'no-such-stage'"),
        (["stage", "train", "--round", "-1"], "--round must be >= 0, got -1"),
        (["run", "--rounds", "0"], "--rounds must be >= 1, got 0"),
        (["run", "--rounds", "-1"], "--rounds must be >= 1, got -1"),
        (["run", "--set", "generate.temperature=[0.5"], "the value is not valid YAML"),
        (["run", "-c", "configs"], "config path configs is not a file"),
        (["run", "-c", "Makefile"], "config file Makefile is not valid YAML: mapping values are not allowed"),
        (["run", "-c", ".git/index"], "config file .git/index is not UTF-8 text"),
        (["run", "--set", "search.corpus=README.md"], "corpus README.md is not a Parquet file"),
        (["run", "--set", "search.corpus=configs"], "corpus configs is not a file"),
        (["report", "ci", "--out", "README.md"], "--out README.md is a file"),
        (["report", "ci", "--out", ""], "--out is empty"),
        (["run", "--set", "model.batch_size=yes"], "a yes/no value where a number is wanted"),
        (
            ["run", "--set", "store.storage_options={endpoint_url: 'http://x'}"],
            "store.storage_options is for a store on",
        ),
        (["run", "--workers", "64"], "--workers 64, but at most 1 shard(s) run at once"),
        (["run", "--set", "data.queries_per_round=1000000"], "set data.queries_per_round to at most"),
        (
            ["run", "--set", "search.backend=searxng", "--set", "search.url=http://127.0.0.1:9"],
            "search service http://127.0.0.1:9 unreachable",
        ),
        (
            ["run", "--set", "tracking.mlflow=true", "--set", "tracking.mlflow_uri=http://127.0.0.1:9"],
            "tracking.mlflow_uri http://127.0.0.1:9 does not answer",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    store = tmp_path / "store"
    done = score(*args, "--set", f"store.root={store}") if "store.root=s3" not in " ".join(args) else score(*args)
    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], done.stderr
    assert not store.exists() or not any(store.rglob("*.parquet"))
