"""score.tracking on a toy round: TensorBoard event files read back with TensorBoard's own reader, a real `mlflow
server` on loopback read back with MLflow's client, and a W&B offline run folder; the numbers are those the manifests
hold. (Through a whole campaign of the real model, on a real Prefect server: tests/test_cli_e2e.py.)"""

from __future__ import annotations

import pytest

from score.pipeline import STAGES, TRAIN
from score.runner import run_stage
from score.store.layout import stage_dir
from score.store.schemas import TRAIN_STEPS
from score.tracking import Tracking, _mlflow_key, numbers


def _log_round(ws, tracking: Tracking) -> tuple[dict[str, float], dict[str, tuple[int, float]]]:
    """Run round 0 and log every stage as the flows do; returns what the manifests hold (at step = round 0) and the
    train stage's optimizer steps as trackers see them (the last step's value of each column, with its step)."""
    expected, step_series = {}, {}
    for spec in STAGES:
        outcome = run_stage(ws, spec, 0)
        stats = vars(outcome.manifest.stats_as(spec.stats))
        steps = (
            ws.store.read_table(stage_dir("toy", 0, TRAIN.folder), TRAIN_STEPS.file).to_pylist()
            if spec is TRAIN
            else None
        )
        tracking.stage(spec.name, 0, stats, steps)
        expected.update(numbers(stats, spec.name))
        for row in steps or []:
            values = numbers({k: v for k, v in row.items() if k != "step"}, "train/step")
            step_series.update({k: (row["step"], v) for k, v in values.items()})
    return expected, step_series


def test_tensorboard_and_mlflow_hold_the_manifests_numbers(toy_workspace, tmp_path, mlflow_url):
    ws = toy_workspace
    ws.cfg.tracking.tensorboard_dir = str(tmp_path / "tb")
    ws.cfg.tracking.mlflow = True
    ws.cfg.tracking.mlflow_uri = mlflow_url
    ws.cfg.tracking.mlflow_experiment = "tracking-unit"
    tracking = Tracking(ws.cfg, None)
    expected, step_series = _log_round(ws, tracking)
    tracking.close()
    assert expected["generate-reports/reports"] == 4 and len(expected) > 40
    assert expected["train/steps"] >= 1 and "train/step/loss" in step_series  # the toy round trains

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb" / "toy"))
    events.Reload()
    seen = {tag: events.Scalars(tag)[-1] for tag in events.Tags()["scalars"]}
    assert set(seen) == set(expected) | set(step_series)
    for tag, value in expected.items():
        assert seen[tag].step == 0 and seen[tag].value == pytest.approx(value, rel=1e-6), tag
    for tag, (step, value) in step_series.items():
        assert seen[tag].step == step and seen[tag].value == pytest.approx(value, rel=1e-6), tag

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url)
    [run] = client.search_runs([client.get_experiment_by_name("tracking-unit").experiment_id])
    assert run.info.run_name == "toy" and run.data.params["generate.samples_per_query"] == "2"
    assert run.info.status == "FINISHED"  # between stages, not "running" forever
    assert run.data.metrics == pytest.approx(expected | {_mlflow_key(k): v for k, (_, v) in step_series.items()})
    again = Tracking(ws.cfg, None)  # a resumed process finds the same MLflow run
    assert again.trackers[1].run_id == run.info.run_id
    experiment = client.get_experiment_by_name("tracking-unit")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI's classic runs view


def test_the_mlflow_run_shows_running_then_finished_or_failed(toy_workspace, mlflow_url):
    """While a flow writes the run its MLflow run is RUNNING; it ends FINISHED or FAILED; a run a killed process
    left RUNNING is tagged so when the next flow begins."""
    from mlflow.tracking import MlflowClient

    ws = toy_workspace
    ws.cfg.tracking.tensorboard = False
    ws.cfg.tracking.mlflow, ws.cfg.tracking.mlflow_uri = True, mlflow_url
    ws.cfg.tracking.mlflow_experiment = "tracking-state"
    client = MlflowClient(tracking_uri=mlflow_url)

    def status():
        return client.get_run(Tracking(ws.cfg, None).trackers[0].run_id).info

    killed = Tracking(ws.cfg, None)
    killed.begin()  # ... and the process dies: no end
    assert status().status == "RUNNING"
    resumed = Tracking(ws.cfg, None)
    resumed.begin()
    assert status().status == "RUNNING"
    assert "stopped without ending it" in client.get_run(resumed.trackers[0].run_id).data.tags["score.interrupted"]
    resumed.end("FAILED")
    assert status().status == "FAILED"
    resumed.begin()
    resumed.end("FINISHED")
    assert status().status == "FINISHED"


def test_wandb_offline_writes_its_run_folder(toy_workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    ws = toy_workspace
    ws.cfg.tracking.tensorboard = False
    ws.cfg.tracking.wandb = True
    ws.cfg.tracking.wandb_dir = str(tmp_path / "wb")
    tracking = Tracking(ws.cfg, None)
    _log_round(ws, tracking)
    tracking.close()
    [folder] = (tmp_path / "wb" / "toy" / "wandb").glob("offline-run-*-toy")
    assert list(folder.glob("*.wandb"))  # the run's records, which `wandb sync` uploads
