"""self-evaluate and harness-evolve on toy objects: artifacts, rewards, and the harness handed to the next round."""

import pytest

from score.runner import run_stage, stage_folder
from score.store.schemas import ArtifactError


def run_round(ws, r):
    for stage in ("generate-reports", "self-evaluate", "harness-evolve", "train"):
        run_stage(ws, stage, r)


def test_evaluate_writes_every_artifact_with_consistent_rows(toy_workspace):
    ws = toy_workspace
    run_stage(ws, "generate-reports", 0)
    out = run_stage(ws, "self-evaluate", 0)
    folder = stage_folder(ws, "self-evaluate", 0)
    read = lambda name: ws.store.read_table(folder, name).to_pylist()  # noqa: E731
    K, Q, J = ws.cfg.generate.samples_per_query, ws.cfg.data.queries_per_round, ws.cfg.evaluate.rubrics_per_query
    rubrics = read("rubrics.parquet")
    assert len(rubrics) == Q * J and {r["status"] for r in rubrics} == {"repaired"}  # readability had no criterion
    assert all(abs(sum(w["weight"] for w in r["weights"]) - 1) < 1e-6 for r in rubrics)
    assert rubrics[0]["proposal_name"] == "Grid storage"
    scores = read("scores.parquet")
    originals = [s for s in scores if not s["probe_kind"]]
    # every report x every criterion of every rubric x 2 passes (5 active + 1 shadow dimension, 1 criterion each)
    assert len(originals) == K * Q * J * 2 * 6
    assert {s["pass_idx"] for s in scores} == {0, 1} and all(0 <= s["score"] <= 10 for s in scores)
    assert {s["score_source"] for s in scores} == {"expected"}
    assert {s["dimension"] for s in scores if s["shadow"]} == {"factual_accuracy"}
    rewards = read("solver_rewards.parquet")
    assert len(rewards) == K * Q and all(r["validity"] == 1.0 and 0 < r["reward"] <= 1 for r in rewards)
    evidence = read("evidence.parquet")
    assert evidence and all(e["verdict"] in ("supported", "contradicted", "not_found") for e in evidence)
    assert all(e["queries"] for e in evidence)
    stats = out.manifest.stats
    for key in (
        "saturation_rate",
        "reward_mean",
        "reward_spread",
        "agreement",
        "detection",
        "parse_failure_rate",
        "search_depth",
        "active_dimensions",
    ):
        assert key in stats
    assert (
        stats["saturation_rate"] == 1.0
    )  # the toy writes identical reports: every group is flat, and that is reported


def test_verdicts_are_written_on_claims_and_their_anchors_against_the_cited_passages(toy_workspace):
    """The evaluator is shown the passage a claim cites and writes a verdict (a trainable span) on the claim and on
    its anchor (a number swapped); the toy judge checks numbers, so every anchor gets less support. Each verdict's
    pair credit is its expectation over the partner's distribution: the toy's claim distribution is (Yes 0.6,
    No 0.3, Unclear 0.1) at temperature 1, so "supported" against the anchor's (0.3, 0.6, 0.1) earns
    P(anchor below) - P(anchor above) = 0.6 + 0.1 - 0 = 0.7, and "contradicted" against the claim's 0.6 + 0.1."""
    ws = toy_workspace
    ws.cfg.evaluate.probe_share = 0.0  # the reports' own claims only (a swap_entity copy's claim is already wrong)
    run_stage(ws, "generate-reports", 0)
    out = run_stage(ws, "self-evaluate", 0)
    evidence = ws.store.read_table(stage_folder(ws, "self-evaluate", 0), "evidence.parquet").to_pylist()
    anchored = [e for e in evidence if e["anchor_claim"]]
    assert anchored and all("2021" in e["claim"] and "2021" not in e["anchor_claim"] for e in anchored)
    assert all(e["anchor_claim"].endswith("[2].") for e in anchored)  # the marker is never touched
    for e in anchored:
        assert e["span"]["name"] == e["anchor_span"]["name"] == "verdict"
        assert e["span"]["prefix"] == e["anchor_span"]["prefix"] and "Passage [2] (Wind turbine)" in e["span"]["prefix"]
        assert (e["written"], e["anchor_written"]) == ("supported", "contradicted")
        assert e["reward"] == pytest.approx(0.7) and e["anchor_reward"] == pytest.approx(0.7)
    assert all(e["anchor_span"] is None and e["reward"] is None for e in evidence if not e["anchor_claim"])
    stats = out.manifest.stats
    assert stats["anchor_detection"] == 1.0 and stats["anchors"] == len(anchored)
    assert stats["verdicts"] == sum(1 + bool(e["anchor_span"]) for e in evidence if e["span"])
    assert stats["verdict_unparsable_rate"] == 0.0
    run_stage(ws, "harness-evolve", 0)
    train = run_stage(ws, "train", 0).manifest.stats
    assert train["verdict_samples"] == 0 and train["evaluator_flat_groups"] >= 1  # every pair earned 1: flat


def test_cited_claims_are_checked_against_the_passages_they_cite_and_gate_the_reward(toy_workspace):
    """With one source, the toy's report cites [1] (supported: no number to miss) and a [2] it does not have (shown
    nothing: not found), so its citation precision is 1/2, and under the precision gate so is its validity."""
    ws = toy_workspace
    ws.cfg.generate.max_sources = 1
    run_stage(ws, "generate-reports", 0)
    out = run_stage(ws, "self-evaluate", 0)
    folder = stage_folder(ws, "self-evaluate", 0)
    reports = ws.store.read_table(stage_folder(ws, "generate-reports", 0), "reports.parquet").to_pylist()
    citations = ws.store.read_table(folder, "citations.parquet").to_pylist()
    assert len(citations) == 2 * len(reports)
    for r in reports:
        mine = sorted((c for c in citations if c["trajectory_id"] == r["trajectory_id"]), key=lambda c: c["cited"])
        assert [c["cited"] for c in mine] == [[1], [2]]
        assert mine[0]["passage_ids"] == [r["sources"][0]["passage_id"]] and mine[0]["verdict"] == "supported"
        assert "Passage [1]" in mine[0]["span"]["prefix"] and "Passage (" not in mine[0]["span"]["prefix"]
        assert mine[1]["passage_ids"] == [] and mine[1]["verdict"] == "not_found"
    rewards = ws.store.read_table(folder, "solver_rewards.parquet").to_pylist()
    assert all(r["citation_precision"] == 0.5 and r["validity"] == 0.5 for r in rewards)
    assert out.manifest.stats["citation_precision"] == 0.5 and out.manifest.stats["citation_claims"] == len(citations)
    ws.cfg.reward.citation_gate = "cites"
    run_stage(ws, "self-evaluate", 0)
    assert {r["validity"] for r in ws.store.read_table(folder, "solver_rewards.parquet").to_pylist()} == {1.0}


def test_rechecks_search_the_same_claims_more_with_a_query_the_evaluator_wrote(toy_workspace):
    """Every report re-checked: the same claims, one more search call (the follow-up query the evaluator wrote, a
    trainable span), more passages; the follow-up earns the change of its claim's separation from its anchor."""
    ws = toy_workspace
    ws.cfg.evaluate.probe_share, ws.cfg.evaluate.depth_probe_share = 1.0, 1.0  # copies share their ids: ignored
    run_stage(ws, "generate-reports", 0)
    out = run_stage(ws, "self-evaluate", 0)
    evidence = ws.store.read_table(stage_folder(ws, "self-evaluate", 0), "evidence.parquet").to_pylist()
    first = {(e["trajectory_id"], e["claim_idx"]): e for e in evidence if not e["deeper"] and not e["probe_kind"]}
    again = [e for e in evidence if e["deeper"]]
    assert again and len(again) == len(first)
    for e in again:
        before = first[(e["trajectory_id"], e["claim_idx"])]
        assert e["claim"] == before["claim"] and e["followup_span"]["name"] == "followup"
        assert e["followup_query"] and e["queries"] == before["queries"] + [e["followup_query"]]
        assert len(e["passage_ids"]) >= len(before["passage_ids"])
        if e["separation"] is not None and before["separation"] is not None:
            assert e["followup_reward"] == pytest.approx(e["separation"] - before["separation"], abs=1e-6)
    assert any(e["followup_reward"] is not None for e in again)  # the toy's claims carry a year to swap
    assert all(e["followup_span"] is None for e in evidence if not e["deeper"])
    assert out.manifest.stats["depth_claims"] == len(again)


def test_a_rationale_is_written_before_each_score_and_trained_with_its_reward(toy_workspace):
    from score.config import TrainConfig
    from score.stages.train import TrainInputs, build_samples

    ws = toy_workspace
    ws.cfg.evaluate.rationale_tokens = 8
    run_stage(ws, "generate-reports", 0)
    run_stage(ws, "self-evaluate", 0)
    judged = ws.store.read_table(stage_folder(ws, "self-evaluate", 0), "judgement_spans.parquet").to_pylist()
    for j in judged:
        why, score = j["rationale_span"], j["span"]
        assert why["name"] == "rationale" and 0 < len(why["token_ids"]) <= 8 and why["prompt"].endswith("Reasoning:")
        assert score["prompt"] == why["prompt"] + why["text"] + "\nScore: " and score["prefix"] == why["prefix"]
    j = next(j for j in judged if j["reward"] is not None)
    inputs = TrainInputs(judgements=[{**j, "reward": 1.0}, {**j, "reward": 0.0}])
    rows, _ = build_samples(0, inputs, TrainConfig(), 0.02)
    assert [r["span"] for r in rows] == ["judgement", "rationale", "judgement", "rationale"]
    assert rows[0]["advantage"] == rows[1]["advantage"] == -rows[2]["advantage"] != 0


def test_corruption_probes_are_scored_and_detected(toy_workspace):
    ws = toy_workspace
    ws.cfg.evaluate.probe_share = 1.0
    ws.cfg.evaluate.probe_kinds = ["strip_citations"]
    run_stage(ws, "generate-reports", 0)
    out = run_stage(ws, "self-evaluate", 0)
    probes = ws.store.read_table(stage_folder(ws, "self-evaluate", 0), "probes.parquet").to_pylist()
    assert probes and all(p["changed"] and "[1]" not in p["text"] for p in probes)
    assert out.manifest.stats["detection"] == 1.0  # the toy scores citations, so stripping them is always caught


def test_second_round_evaluates_under_the_first_rounds_harness(toy_workspace):
    ws = toy_workspace
    run_round(ws, 0)
    harness0 = ws.store.read_table(stage_folder(ws, "harness-evolve", 0), "harness.parquet").to_pylist()
    assert {d["id"]: d["status"] for d in harness0}["grid_storage"] == "candidate"  # the proposal, on probation
    decisions = ws.store.read_table(stage_folder(ws, "harness-evolve", 0), "decisions.parquet").to_pylist()
    assert any(d["rule"] == "proposal" for d in decisions) and all(d["reason"] for d in decisions)
    run_round(ws, 1)
    rubrics = ws.store.read_table(stage_folder(ws, "self-evaluate", 1), "rubrics.parquet").to_pylist()
    assert {r["harness_version"] for r in rubrics} == {0}
    shadow = {c["dimension"] for c in rubrics[0]["criteria"] if c["shadow"]}
    assert "grid_storage" in shadow


def test_evaluate_refuses_an_unfinished_generate(toy_workspace):
    with pytest.raises(ArtifactError, match="not finished"):
        run_stage(toy_workspace, "self-evaluate", 0)


def test_static_mode_writes_the_seed_harness_again(toy_workspace):
    ws = toy_workspace
    ws.cfg.harness.mode = "static"
    run_round(ws, 0)
    folder = stage_folder(ws, "harness-evolve", 0)
    dims = ws.store.read_table(folder, "harness.parquet").to_pylist()
    assert [(d["id"], d["status"]) for d in dims] == [
        (d.id, "active" if d.active else "candidate") for d in ws.cfg.harness.dimensions
    ]
    assert [d["rule"] for d in ws.store.read_table(folder, "decisions.parquet").to_pylist()] == ["static"]


def test_controls_the_harness_raises_reach_the_next_rounds_prompts_and_search(toy_workspace):
    """Rules set to fire on anything (saturation after one round, strictness on any share): round 0's harness-evolve
    raises search_depth (citation_support saturates), criteria_per_dimension (the others do) and strictness, and
    round 1's rubric prompts, judging prompts and evidence checks run under them, not only the harness table."""
    from score.prompts import STRICTNESS

    ws = toy_workspace
    rules = ws.cfg.harness.rules
    rules.saturated_mean, rules.saturated_spread, rules.saturated_rounds = 0.0, 10.0, 1
    rules.min_reports, rules.crowded_reward, rules.crowded_share = 2, 0.0, 0.0
    ws.cfg.harness.search_depth = 1
    run_round(ws, 0)
    controls = ws.store.read_table(stage_folder(ws, "harness-evolve", 0), "controls.parquet").to_pylist()[0]
    assert (controls["search_depth"], controls["criteria_per_dimension"], controls["strictness"]) == (2, 2, 1)
    run_stage(ws, "generate-reports", 1)
    run_stage(ws, "self-evaluate", 1)
    folder = stage_folder(ws, "self-evaluate", 1)
    rubrics = ws.store.read_table(folder, "rubrics.parquet").to_pylist()
    assert all("and 2 concrete criterion per dimension" in r["span"]["prompt"] for r in rubrics)
    spans = ws.store.read_table(folder, "judgement_spans.parquet").to_pylist()
    assert spans and all(STRICTNESS[1].strip() in s["span"]["prefix"] + s["span"]["prompt"] for s in spans)
    evidence = ws.store.read_table(folder, "evidence.parquet").to_pylist()
    per_report = {}
    for e in evidence:
        if not e["deeper"] and not e["probe_kind"]:
            per_report[e["trajectory_id"]] = per_report.get(e["trajectory_id"], 0) + 1
    assert max(per_report.values()) == 2  # claims checked per report: search_depth 2 (1 in round 0)
    assert all(len(e["queries"]) == ws.cfg.harness.search_hops for e in evidence if not e["deeper"])


def test_a_cited_sentence_too_short_to_check_counts_as_unverified(toy_workspace):
    """A report citing only in short sentences cannot keep its citation precision: each short cited sentence is a
    citation row with no verdict written (not found), so precision counts it as unsupported."""
    from score.evaluator import Evaluation
    from score.evaluator.evidence import check_citations
    from score.evaluator.statistics import citation_precision
    from score.harness import seed_harness

    ws = toy_workspace
    source = {"n": 1, "passage_id": "p1", "title": "Wind", "url": "", "text": "Wind power output doubled in 2021."}
    report = {"query_id": "q", "query": "wind?", "trajectory_id": "t", "sources": [source],
              "report": "Wind power output doubled in 2021 across many regions [1]. Wind grew [1]."}  # fmt: skip
    rows = check_citations(Evaluation(ws, ws.backend(), seed_harness(ws.cfg.harness), 0), [report])
    short = [r for r in rows if r["claim"] == "Wind grew [1]."]
    assert len(rows) == 2 and len(short) == 1 and short[0]["verdict"] == "not_found" and short[0]["span"] is None
    assert citation_precision(rows) == {"t": 0.5}  # the long claim is supported by the toy, the short one is not
