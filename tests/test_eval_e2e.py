"""`score ablate`, `score eval` and `score judge` end to end: real Prefect flows, the real embedded model as solver,
evaluator and judge (marked slow), and their bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import error_lines

from tests.test_cli_e2e import score


def test_ablate_holds_one_arms_engines_at_a_time(monkeypatch):
    """The arms alternate round by round in one process: each arm's engines are closed before the other's round."""
    import flows.benchmark as ablate
    from score.config import load_config

    events = []

    class Held:
        def __init__(self, run):
            self.run = run

        def release(self):
            events.append(("release", self.run))

    monkeypatch.setattr(ablate, "round_flow", lambda config, r: events.append(("round", config["run"], r)))
    monkeypatch.setattr(ablate, "share_round_zero", lambda source, target: None)
    monkeypatch.setattr(ablate, "report_pair", lambda config, baseline: "report")
    monkeypatch.setattr(ablate, "workspace", lambda config: Held(config["run"]))
    ablate._ablate(load_config(Path("configs/ci.yaml")).model_dump(mode="json"), 3, [0])
    rounds = [(e[1], e[2]) for e in events if e[0] == "round"]
    assert rounds == [("ci", 0), ("ci-static", 0), ("ci", 1), ("ci-static", 1), ("ci", 2), ("ci-static", 2)]
    for i, event in enumerate(events):
        if event[0] == "round":
            assert events[i + 1] == ("release", event[1])  # released before anything else runs


def started_at(manifest: Path) -> str:
    return json.loads(manifest.read_text())["started_at"]


@pytest.mark.slow
def test_ablation_then_eval_and_judge_on_the_real_model(tmp_path, ci_campaign):
    """The session's campaign is the SCORE arm (run `ci` copied whole: the ablation finds every stage and held-out
    measurement of it done), so only the static arm's round 1 runs: `score ablate` 70 s here, against 190 s for both
    arms afresh."""
    store = tmp_path / "store"
    shutil.copytree(ci_campaign.store / "ci", store / "ci")
    common = ("-c", "configs/ci.yaml", "--set", f"store.root={store}", "--set", "benchmark.limit=1")
    common += ("--set", "data.heldout=2")  # the campaign's: every checkpoint on two held-out questions, paired
    before = {m: started_at(m) for m in (store / "ci").rglob("_manifest.json")}
    done = score("ablate", "--rounds", "2", *common, timeout=2400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {m: started_at(m) for m in before} == before  # nothing of the SCORE arm redone
    for run, mode in (("ci", "rules"), ("ci-static", "static")):
        for r in (0, 1):
            harness = json.loads((store / run / f"round-000{r}" / "harness" / "_manifest.json").read_text())
            assert harness["config"]["harness"]["mode"] == mode and harness["config"]["seed"] == 0
            held = json.loads((store / run / "heldout" / f"round-000{r}" / "_manifest.json").read_text())["stats"]
            assert held["queries"] == 2 and held["reports"] == 2 and 0 <= held["gold_recall"] <= 1
            print(
                f"{run} ({mode}) round {r}: held-out gold recall {held['gold_recall']}, answers "
                f"{held['answer_accuracy']}"
            )
        assert not (store / run / "benchmark").exists()  # the RACE benchmark only with benchmark.each_round
    # from round 1 on, the static arm judges with the base weights (round 0's), SCORE with round 0's checkpoint
    judges = {
        (run, r): json.loads((store / run / f"round-000{r}" / "evaluate" / "_manifest.json").read_text())["inputs"]
        for run in ("ci", "ci-static")
        for r in (0, 1)
    }
    assert judges["ci-static", 1]["judge"] == judges["ci-static", 0]["judge"] == judges["ci", 0]["judge"]
    assert judges["ci", 1]["judge"] != judges["ci", 0]["judge"]
    # round 0 is computed once and shared: the static arm holds the same folders, and ran its harness-evolve alone
    for stage in ("generate", "evaluate", "train"):
        manifests = [
            json.loads((store / run / "round-0000" / stage / "_manifest.json").read_text())
            for run in ("ci", "ci-static")
        ]
        assert manifests[0] == manifests[1]
    assert json.loads((store / "ci" / "round-0001" / "harness" / "_manifest.json").read_text())["stats"]["alarms"] >= 0
    # same queries and seeds: round 0 (base model, seed harness in both arms) gives both arms the same rewards
    rewards = [
        pq.read_table(store / run / "round-0000" / "evaluate" / "solver_rewards.parquet").column("reward").to_pylist()
        for run in ("ci", "ci-static")
    ]
    assert rewards[0] == rewards[1]
    # both arms measured the same base weights on the same held-out trajectories
    refs = [
        pq.read_table(store / run / "heldout" / "base" / "reports.parquet").column("report").to_pylist()
        for run in ("ci", "ci-static")
    ]
    assert refs[0] == refs[1]
    # paired beyond round 0: round 1's solver is round 0's shared checkpoint, sampled on the same seeds, and its
    # trajectories carry the same ids (the evaluator's sampling seeds derive from them); only the harness differs
    generated = [
        pq.read_table(store / run / "round-0001" / "generate" / "reports.parquet", columns=["trajectory_id", "report"])
        for run in ("ci", "ci-static")
    ]
    assert generated[0].equals(generated[1])
    folder = (
        Path(done.stderr.split("report in ")[1].split("/index.html")[0].strip())
        if "report in " in done.stderr
        else None
    )
    assert folder is not None and (folder / "heldout.png").exists(), done.stderr[-2000:]
    page = (folder / "index.html").read_text()
    table = (folder / "ablation.md").read_text()
    assert "ci vs ci-static" in page and "Over seeds" in page and "| 1 | ci-static | 1 |" in table
    assert "| base | ci | 1 |" in table and "hacking gap" in table

    again = score("eval", "--checkpoint", "latest", "--no-flow", *common)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "overall" in again.stdout and "0.5 = as good as the reference" in again.stderr

    outside = tmp_path / "outside.csv"
    pd.DataFrame(
        {
            "id": ["a", "b"],
            "query": ["What drives solar power adoption?"] * 2,
            "report": ["# Solar\nCosts fell [1], so adoption rose [2].", "I like turtles."],
        }
    ).to_csv(outside, index=False)
    out = tmp_path / "judged.parquet"
    judged = score("judge", "--reports", str(outside), "--out", str(out), *common)
    assert judged.returncode == 0, judged.stderr[-3000:]
    frame = pq.read_table(out).to_pandas()
    assert list(frame.id) == ["a", "b"] and frame.overall.between(0, 1).all() and len(frame.criteria[0]) > 0
    print("outside reports judged by round 0's checkpoint:", frame[["id", "overall"]].to_dict("records"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "--checkpoint", "latest"], "has no finished train stage"),
        (["eval", "--limit", "0"], "--limit must be >= 1, got 0"),
        (["eval", "--checkpoint", "round-x7"], "neither 'base', 'latest', 'round-N' nor a folder"),
        (
            ["eval", "--set", "benchmark.reference=/nonexistent/ref.csv", "--checkpoint", "base"],
            "/nonexistent/ref.csv (benchmark.reference) does not exist",
        ),
        (["eval", "--set", "benchmark.judge.seeds=[1, 2]"], "at least 3 distinct seeds"),
        (
            ["judge", "--reports", "/nonexistent/r.csv", "--out", "/tmp/x.parquet"],
            "reports file /nonexistent/r.csv does not exist",
        ),
        (["ablate", "--set", "harness.mode=static"], "needs the meta-harness arm"),
        (["ablate", "--rounds", "1"], "round 0 is shared"),
        (["ablate", "--seeds", "0,x"], "not a comma-separated list of integers"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    store = tmp_path / "store"
    done = score(*args, "-c", "configs/ci.yaml", "--set", f"store.root={store}")
    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], done.stderr
    assert not store.exists() or not any(store.rglob("*.parquet"))
