"""The experiment trackers users already have: TensorBoard event files, MLflow, Weights & Biases (`tracking` config).

What is logged, under the run (one tracker run per SCORE run, found again on resume) and the round:
- every finished stage's statistics (its manifest's numbers) as `<stage>/<statistic>` at step = round;
- every optimizer step of the train stage (`train.steps.parquet`) as `train/step/<column>` at the global step;
- each round's benchmark score (`benchmark/<statistic>` at step = round), when one is computed;
- the config as parameters (flattened `section.key`), once per tracker run;
- the round's plots (`score report`) as images.

A stage skipped because its manifest matches logs nothing (its numbers were logged when it ran). An enabled tracker
that cannot work (its package missing, the MLflow server not answering) stops the command before any work
(`check_tracking`, at preflight); one that fails later leaves a warning and the stage's artifacts as they are: the
store is the record, trackers are views of it. TensorBoard costs nothing and is on by default; MLflow and W&B are
off (`pip install 'score[tracking]'`, which `make` installs).
"""

from __future__ import annotations

import logging
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from score.config import ConfigError, RunConfig

log = logging.getLogger(__name__)

RUN_TAG = "score.run"  # MLflow: the tag that finds a SCORE run's tracker run again
KIND_TAG = "mlflow.experimentKind"  # MLflow 3: which view of the experiment its UI opens


def flat_config(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A config as `section.key` -> value strings (what trackers take as parameters).

    >>> flat_config({"run": "ci", "train": {"lr": 0.0002, "betas": [0.9, 0.999]}})
    {'run': 'ci', 'train.lr': '0.0002', 'train.betas': '[0.9, 0.999]'}
    """
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)
    return out


def numbers(stats: dict[str, Any], prefix: str) -> dict[str, float]:
    """The finite numbers of a stage's statistics (bools as 0/1), keyed `prefix/name`.

    >>> numbers({"reports": 8, "share": 0.5, "name": "x", "kl": None, "ok": True, "bad": float("nan")}, "gen")
    {'gen/reports': 8.0, 'gen/share': 0.5, 'gen/ok': 1.0}
    """
    out = {}
    for k, v in stats.items():
        if isinstance(v, (bool, int, float)) and math.isfinite(float(v)):
            out[f"{prefix}/{k}"] = float(v)
    return out


def check_tracking(cfg: RunConfig) -> None:
    """Fail before any work, naming the fix, when an enabled tracker cannot work: its package is missing, or the
    MLflow server does not answer (a tracker that fails later only warns: the stages' work is in the store)."""
    import importlib.util
    import urllib.request

    t = cfg.tracking
    wanted = {"tensorboard": t.tensorboard, "mlflow": t.mlflow, "wandb": t.wandb}
    for package, on in wanted.items():
        if on and importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"tracking.{package} is on but the {package} package is not installed; pip install "
                f"'score[tracking]', or --set tracking.{package}=false"
            )
    if t.mlflow and t.mlflow_uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{t.mlflow_uri.rstrip('/')}/health", timeout=5):
                pass
        except OSError as e:
            raise ConfigError(
                f"tracking.mlflow_uri {t.mlflow_uri} does not answer ({getattr(e, 'reason', e)}); start `mlflow "
                "server` there, set tracking.mlflow_uri to yours, or --set tracking.mlflow=false"
            ) from None
    for key in ("tensorboard_dir", "wandb_dir"):
        folder = getattr(t, key) if getattr(t, key.removesuffix("_dir")) else None
        if folder and (problem := _unwritable(Path(folder))):
            raise ConfigError(f"tracking.{key} {folder} {problem}; set it to a folder this user can write")


def _unwritable(folder: Path) -> str | None:
    """Why `folder` could not be made or written (checked on its nearest existing ancestor, writing nothing)."""
    at = folder
    while not at.exists() and at != at.parent:
        at = at.parent
    if not at.is_dir():
        return f"cannot be made: {at} is a file" if at != folder else "is a file"
    return None if os.access(at, os.W_OK | os.X_OK) else f"is not writable ({at} is not)"


class TensorBoard:
    """Event files in `folder` (read them with `tensorboard --logdir <folder's parent>`)."""

    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = folder
        self.writer = SummaryWriter(log_dir=str(folder))

    def params(self, config: dict[str, str]) -> None:
        table = "\n".join(f"| {k} | {v} |" for k, v in config.items())
        self.writer.add_text("config", "| key | value |\n|---|---|\n" + table, 0)
        self.writer.flush()

    def metrics(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def image(self, tag: str, path: Path, step: int) -> None:
        import matplotlib.image

        self.writer.add_image(tag, matplotlib.image.imread(str(path))[..., :3], step, dataformats="HWC")
        self.writer.flush()

    def begin(self) -> None:
        pass

    def end(self, status: str) -> None:
        self.writer.flush()

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflow:
    """One MLflow run per SCORE run in `experiment`, found again by its `score.run` tag; the tracking URI is the
    http:// address of `mlflow server` (a folder or sqlite:///... needs the full mlflow package, not mlflow-skinny)."""

    def __init__(self, uri: str, experiment: str, run: str):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        if not found or KIND_TAG not in found.tags:  # the UI's classic runs view, not its GenAI evaluation view
            self.client.set_experiment_tag(experiment_id, KIND_TAG, "custom_model_development")
        runs = self.client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run}'", max_results=1)
        self.fresh = not runs
        self.run_id = (
            runs[0].info.run_id
            if runs
            else self.client.create_run(experiment_id, run_name=run, tags={RUN_TAG: run}).info.run_id
        )

    def params(self, config: dict[str, str]) -> None:
        if not self.fresh:  # MLflow keeps a run's parameters immutable: they were logged when it was created
            return
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in config.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 parameters a batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_mlflow_key(k), v, now, step) for k, v in values.items()]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def image(self, tag: str, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=f"{tag.rsplit('/', 1)[0]}/round-{step:04d}")

    def begin(self) -> None:
        """RUNNING while a campaign or stage flow runs; a run a killed process left RUNNING is tagged so first."""
        run = self.client.get_run(self.run_id)
        if run.info.status == "RUNNING":
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.client.set_tag(self.run_id, "score.interrupted", f"a process writing it stopped without ending it "
                                f"(found at {stamp}); its flow runs are marked Crashed")  # fmt: skip
        self.client.update_run(self.run_id, status="RUNNING")

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)

    def flush(self) -> None:
        pass  # each batch is sent as it is logged

    def close(self) -> None:
        self.end("FINISHED")


def _mlflow_key(key: str) -> str:
    """MLflow metric names allow letters, digits, and _ - . space / only.

    >>> _mlflow_key("self-evaluate/valid share")
    'self-evaluate/valid share'
    >>> _mlflow_key("train/step/ratio(mean)")
    'train/step/ratio_mean_'
    """
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", key)


class WandB:
    """A W&B run per SCORE run (id derived from the run name, resumed), offline by default: `wandb sync` uploads it."""

    def __init__(self, mode: str, project: str, folder: Path, run: str):
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project,
            name=run,
            id=re.sub(r"[^A-Za-z0-9_-]", "-", run),
            resume="allow",
            mode=mode,
            dir=str(folder),
            reinit="create_new",  # score ablate writes two SCORE runs from one process
        )
        self.run.define_metric("round")
        self.run.define_metric("train/global_step")
        self.run.define_metric("train/step/*", step_metric="train/global_step")
        self.run.define_metric("*", step_metric="round")

    def params(self, config: dict[str, str]) -> None:
        self.run.config.update(config, allow_val_change=True)

    def metrics(self, values: dict[str, float], step: int) -> None:
        axis = "train/global_step" if any(k.startswith("train/step/") for k in values) else "round"
        self.run.log({**values, axis: step})

    def image(self, tag: str, path: Path, step: int) -> None:
        import wandb

        self.run.log({tag: wandb.Image(str(path)), "round": step})

    def begin(self) -> None:
        pass

    def end(self, status: str) -> None:
        pass  # finished when the process closes it (W&B marks a run that stops reporting itself)

    def flush(self) -> None:
        pass  # W&B's own service writes as it goes

    def close(self) -> None:
        self.run.finish()


class Tracking:
    """The enabled trackers of one SCORE run; each call fans out to all of them."""

    def __init__(self, cfg: RunConfig, local_root: Path | None):
        t, self.trackers = cfg.tracking, []
        makers = {
            "tensorboard": lambda: TensorBoard(_folder(t.tensorboard_dir, local_root, cfg.run, "tensorboard")),
            "mlflow": lambda: MLflow(t.mlflow_uri, t.mlflow_experiment, cfg.run),
            "wandb": lambda: WandB(
                t.wandb_mode, t.wandb_project, _folder(t.wandb_dir, local_root, cfg.run, ""), cfg.run
            ),
        }
        for name, make in makers.items():
            if getattr(t, name):
                try:
                    self.trackers.append(make())
                except Exception as e:  # checked at preflight (check_tracking); failing later, it only warns
                    log.warning("tracker %s is off for this process (%s: %s)", name, type(e).__name__, str(e)[:200])
        self._each("params", flat_config(cfg.model_dump(mode="json")))

    def stage(self, stage: str, round_idx: int, stats: dict[str, Any], steps: list[dict] | None = None) -> None:
        """A finished stage's statistics at step = round, and (train) its optimizer steps at their global step."""
        self._each("metrics", numbers(stats, stage), round_idx)
        for row in steps or []:
            self._each("metrics", numbers({k: v for k, v in row.items() if k != "step"}, "train/step"), row["step"])
        self._each("flush")

    def plots(self, paths: list[Path], round_idx: int) -> None:
        for path in paths:
            self._each("image", f"plots/{path.stem}", path, round_idx)
        self._each("flush")

    def begin(self) -> None:
        """A flow that writes the run starts: trackers that show run state show it running."""
        self._each("begin")

    def end(self, status: str = "FINISHED") -> None:
        """The flow ended (FINISHED) or failed (FAILED): trackers that show run state show it."""
        self._each("end", status)

    def close(self) -> None:
        self._each("close")

    def _each(self, method: str, *args) -> None:
        for tracker in self.trackers:
            try:
                getattr(tracker, method)(*args)
            except Exception as e:  # a tracker is a view of the store: its failure must not fail the stage
                log.warning("%s could not %s (%s: %s); the store keeps every number", type(tracker).__name__,
                            method, type(e).__name__, str(e)[:200])  # fmt: skip


def _folder(configured: str | None, local_root: Path | None, run: str, name: str) -> Path:
    """A tracker's local folder: the configured one (per run inside it), else inside the run's folder of a local
    store, else ./tracking/<run> (an S3 store)."""
    if configured:
        return Path(configured) / run
    base = local_root / run if local_root is not None else Path("tracking") / run
    return base / name if name else base
