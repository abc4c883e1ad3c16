"""prefect.yaml for real: a Prefect server on loopback, a process work pool, `prefect deploy`, a worker, and a
one-stage run triggered with `prefect deployment run` that completes and writes its stage folder."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from servers import PREFECT, stop

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_deploy_and_run_one_stage_through_a_server_and_a_worker(tmp_path, prefect_env):
    client = {**prefect_env, "SCORE_REPO": str(ROOT)}
    worker = None
    try:

        def prefect(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
            done = subprocess.run(
                [PREFECT, *args], cwd=ROOT, env=client, capture_output=True, text=True, timeout=timeout
            )
            assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            return done

        prefect("work-pool", "create", "score-process", "--type", "process")
        prefect("--no-prompt", "deploy", "--all")
        listed = prefect("deployment", "ls").stdout
        assert "score-stage/one-stage" in listed and "score-campaign/nightly" in listed
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "score-process"],
            cwd=ROOT,
            env=client,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        store = tmp_path / "store"
        params = {
            "config": "configs/ci.yaml",
            "round_idx": 0,
            "stage": "generate-reports",
            "force": True,
            "overrides": [f"store.root={store}"],
        }
        run = prefect(
            "deployment", "run", "score-stage/one-stage", "--params", json.dumps(params), "--watch", timeout=900
        )
        assert "Completed" in run.stdout + run.stderr, run.stdout[-2000:]
        manifest = json.loads((store / "ci" / "round-0000" / "generate" / "_manifest.json").read_text())
        assert manifest["stage"] == "generate-reports" and manifest["files"]["reports.parquet"]["rows"] == 2
        assert not (store / "ci" / "round-0000" / "evaluate").exists()  # only the stage asked for
    finally:
        if worker is not None:
            stop(worker)


def test_the_custom_run_forms_offer_the_stages_as_a_choice_and_describe_every_parameter():
    from prefect.utilities.callables import parameter_schema

    from flows.benchmark import ablate_flow, eval_flow
    from flows.round import campaign_flow, round_flow, stage_flow
    from score.pipeline import STAGE_NAMES

    for deployed in (campaign_flow, round_flow, stage_flow, eval_flow, ablate_flow):
        schema = parameter_schema(deployed).model_dump_for_openapi()["properties"]
        assert all(p.get("description") for p in schema.values()), deployed.name
        if deployed is stage_flow:
            assert schema["stage"]["enum"] == list(STAGE_NAMES)
