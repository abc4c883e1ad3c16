"""The evaluator's rewards per judgement and per rubric, the written-score parse, and the faults around them:
pure functions on hand-built judgement rows, plus one toy self-evaluate."""

from __future__ import annotations

import math

import pytest

from score.config import RewardConfig
from score.corrupt import swap_entity
from score.evaluator.statistics import reward_judgements
from score.rewards import consistency, pair_credit, rubric_reward
from score.scale import parse_score, read_off, score_tokens

RW = RewardConfig(consistency_null=0.2)


def point(score: float | None) -> list[float]:
    """A judge certain of its score: the 11-way distribution it was drawn from."""
    return [1.0 if score is not None and s == round(score) else 0.0 for s in range(11)]


def row(tid, p, dim, written, kind="", crit=None, dist=None):
    return {"query_id": "q", "trajectory_id": tid, "probe_kind": kind, "pass_idx": p, "dimension": dim,
            "criterion": crit or f"{dim} c", "written": written, "report_cut": False, "reward_kind": "",
            "reward": None, "distribution": dist or point(written)}  # fmt: skip


def judged(scores_by_pass: list[list[float | None]], dim="citation_support") -> list[dict]:
    return [row(f"t{k}", p, dim, s) for p, scores in enumerate(scores_by_pass) for k, s in enumerate(scores)]


def copies(scores_by_pass: list[float], dim="citation_support", tid="t0") -> list[dict]:
    """Judgements of a corrupted copy of `tid` (citations stripped: damages citation_support), one per pass."""
    return [row(tid, p, dim, s, kind="strip_citations") for p, s in enumerate(scores_by_pass)]


DAMAGED = {"strip_citations": ["citation_support"], "drop_section": ["comprehensiveness"]}


def test_pair_credit_is_the_expectation_over_the_other_sides_distribution_on_both_sides():
    original = [0.0] * 11
    original[7], original[3] = 0.6, 0.4
    copy = [0.0] * 11
    copy[4], copy[7], copy[9] = 0.5, 0.3, 0.2
    assert pair_credit(7, copy, above=True) == pytest.approx(0.5 - 0.2)  # by hand: P(copy < 7) - P(copy > 7)
    assert pair_credit(4, original, above=False) == pytest.approx(0.6 - 0.4)  # P(original > 4) - P(original < 4)
    rows = [
        row("t0", 0, "citation_support", 7, dist=original),
        row("t0", 0, "citation_support", 4, "strip_citations", dist=copy),
    ]
    reward_judgements(rows, passes=1, rw=RW, damaged=DAMAGED)
    assert [(r["reward_kind"], round(r["reward"], 6)) for r in rows] == [("pair", 0.3), ("pair", 0.2)]


def test_a_judge_that_scores_original_and_copy_alike_earns_no_pair_credit_and_no_consistency():
    rows = judged([[7, 3, 5, 9], [7, 3, 5, 9]]) + copies([7, 7])  # stable across passes, blind to the damage
    reward_judgements(rows, passes=2, rw=RW, damaged=DAMAGED)
    assert {r["reward"] for r in rows if r["reward_kind"] == "pair"} == {0.0}
    assert {r["reward"] for r in rows if r["reward_kind"] == "consistency"} == {0.0}  # gated by that blindness
    same = [0.1] * 10 + [0.0]
    assert pair_credit(5, same, above=True) + pair_credit(5, same, above=False) == 0.0


def test_consistency_pays_agreement_above_the_null_only_where_the_column_detects_damage():
    rows = judged([[2, 4, 6, 8], [1, 5, 6, 9]]) + copies([0, 0])  # same ranking; t0's copy scored below t0 (2, 1)
    reward_judgements(rows, passes=2, rw=RW, damaged=DAMAGED)
    consistent = [r["reward"] for r in rows if r["reward_kind"] == "consistency"]
    assert consistent == pytest.approx([(1.0 - 0.2) * 1.0] * 6)  # agreement 1, less the null, times detection 1
    for scores in ([7, 7, 7, 7], [7, 7, 7, 8], [6.0, 6.1, 6.2, 6.3]):  # stable tiny differences agree perfectly
        rows = judged([scores, scores]) + copies([0, 0])
        reward_judgements(rows, passes=2, rw=RW, damaged=DAMAGED)
        assert {r["reward"] for r in rows if r["reward_kind"] == "consistency"} == {0.0}, scores
    rows = judged([[2, 4, 6, 8], [1, 5, 6, 9]])  # no probed report in the query: nothing to gate with
    reward_judgements(rows, passes=2, rw=RW, damaged=DAMAGED)
    assert {r["reward"] for r in rows} == {0.0}


def test_consistency_is_against_the_leave_one_out_consensus_of_the_other_passes():
    rows = judged([[2, 4, 6, 8], [2, 4, 6, 8], [3, 4, 7, 9], [8, 6, 4, 2]]) + copies([0, 0, 0, 10])
    reward_judgements(rows, passes=4, rw=RW, damaged=DAMAGED)
    by_pass = {
        p: [r["reward"] for r in rows if r["pass_idx"] == p and r["reward_kind"] == "consistency"] for p in range(4)
    }
    assert by_pass[3] == [0.0] * 3 and by_pass[0] == pytest.approx([0.8] * 3)


def test_an_unparsable_judgement_earns_the_lowest_reward_and_never_nan():
    rows = judged([[2, None, 6, 8], [1, 5, 6, 9]]) + copies([0, 0])
    reward_judgements(rows, passes=2, rw=RW, damaged=DAMAGED)
    unparsable = [r for r in rows if r["written"] is None]
    assert [r["reward"] for r in unparsable] == [RW.unparsable_judgement]  # below any written one's (>= -1)
    assert all(not math.isnan(r["reward"]) and r["reward"] >= -1 for r in rows if r["written"] is not None)
    assert consistency([None, None], [[1], [2]], tau=1.0) == 0.0


def test_pair_credit_only_on_the_dimensions_the_corruption_damages():
    rows = [row("t0", 0, d, 8) for d in ("citation_support", "readability", "comprehensiveness")]
    rows += [row("t0", 0, d, 3, kind="strip_citations") for d in ("citation_support", "readability")]
    rows += [row("t0", 0, "comprehensiveness", 9, kind="drop_section")]
    reward_judgements(rows, passes=1, rw=RW, damaged=DAMAGED)
    got = {(r["probe_kind"], r["dimension"]): (r["reward_kind"], r["reward"]) for r in rows}
    assert got == {
        ("", "citation_support"): ("pair", 1.0),  # the original's side of a pair is trained too
        ("", "readability"): ("consistency", 0.0),  # no pair on this column: no consistency pay
        ("", "comprehensiveness"): ("pair", -1.0),  # scored below its damaged copy
        ("strip_citations", "citation_support"): ("pair", 1.0),  # scored the copy lower where it is damaged
        ("strip_citations", "readability"): ("", None),  # readability is not judged on stripped citations
        ("drop_section", "comprehensiveness"): ("pair", -1.0),  # scored the damaged copy higher
    }


def test_score_spread_and_detection_count_reports_not_copies():
    from score.config import RunConfig
    from score.evaluator.statistics import _Tallies, _tally_judgements

    rows = judged([[7, 7, 7, 7], [7, 7, 7, 7]], dim="citation_support")
    rows += [row("t0", p, "citation_support", 2, kind="strip_citations") for p in range(2)]
    cfg = RunConfig()
    reward_judgements(rows, 2, cfg.reward, cfg.evaluate.probe_dimensions)
    t = _Tallies(round_idx=0, precision={})
    _tally_judgements(rows, 2, 1.0, t)
    assert [sd for _, sd in t.columns] == [0.0, 0.0]  # the copy's low score is no spread among the reports
    assert (t.detected.n, t.detected.rate) == (1, 1.0)  # one probed report, however many judgements of it


def test_a_rubric_earns_by_what_its_weights_do_and_a_failed_one_earns_less_than_any():
    separates = rubric_reward("ok", [(0.8, 0.5), (0.7, 0.6)], [0.0], failed=-2.0)
    blind = rubric_reward("ok", [(0.6, 0.6), (0.7, 0.7)], [0.9], failed=-2.0)  # consistent, but no separation
    worst_parsed = rubric_reward("repaired", [(0.1, 0.9)], [], failed=-2.0)
    assert separates == 1.0 and blind == 0.0 and worst_parsed == -1.0
    assert rubric_reward("failed", [(0.9, 0.1)], [1.0], failed=-2.0) < worst_parsed


def test_swap_entity_never_touches_citation_markers():
    text = "Solar capacity grew [1] and wind [2] too; see [3]."
    for seed in range(20):
        out = swap_entity(text, seed)
        assert [m for m in ("[1]", "[2]", "[3]") if m in out] == ["[1]", "[2]", "[3]"]
    numbered = "In 2021 solar capacity grew by 12 percent [4]."
    assert all("[4]" in swap_entity(numbered, s) and swap_entity(numbered, s) != numbered for s in range(20))


def test_ten_written_as_one_token_parses_and_reads_off():
    vocab = {str(s): 100 + s for s in range(11)}
    tokens = score_tokens(lambda s: [vocab[s]])
    assert tokens.then is None and tokens.candidates[10] == 110
    first = [math.log(0.9) if s == 10 else math.log(0.01) for s in range(11)]
    expected, dist = read_off(tokens, first, None)
    assert expected > 9 and abs(dist.sum() - 1) < 1e-9
    assert parse_score({v: k for k, v in vocab.items()}[110]) == 10.0


@pytest.mark.parametrize("text", ["", "abc", "11", "-3", "\n"])
def test_no_score_in_range_is_unparsable(text):
    assert parse_score(text) is None


def test_the_toy_round_writes_rewarded_judgement_spans(toy_workspace):
    from score.runner import run_stage, stage_folder

    ws = toy_workspace
    ws.cfg.evaluate.probe_share = 1.0
    run_stage(ws, "generate-reports", 0)
    out = run_stage(ws, "self-evaluate", 0)
    spans = ws.store.read_table(stage_folder(ws, "self-evaluate", 0), "judgement_spans.parquet").to_pylist()
    K, Q, m = ws.cfg.generate.samples_per_query, ws.cfg.data.queries_per_round, ws.cfg.evaluate.passes
    originals = [s for s in spans if not s["probe_kind"]]
    assert len(originals) == K * Q * m * 6  # 5 active + 1 shadow dimension, one criterion each
    assert all(s["span"]["name"] == "judgement" and s["span"]["token_ids"] and s["span"]["prefix"] for s in spans)
    assert {s["reward_kind"] for s in originals} == {"consistency", "pair"}
    assert all(s["sibling_id"] and s["sibling_id"] != s["trajectory_id"] for s in originals)  # K = 2: the other one
    probe = [s for s in spans if s["reward_kind"] == "pair" and s["probe_kind"]]
    assert probe and all(s["dimension"] in ws.cfg.evaluate.probe_dimensions[s["probe_kind"]] for s in probe)
    assert all(len(s["distribution"]) == 11 and abs(sum(s["distribution"]) - 1) < 1e-5 for s in spans)
    stats = out.manifest.stats
    assert stats["judgements"] == len(spans) and stats["unparsable_rate"] == 0.0 and stats["reports_cut"] == 0
    assert stats["probed_reports"] > 0


def test_a_tokenizer_without_a_distinct_first_token_per_answer_is_refused_with_the_fix():
    from score.evaluator.claims import answer_tokens

    with pytest.raises(ValueError, match="a verdict needs a distinct first token per answer"):
        answer_tokens(lambda text: [7] + [ord(c) for c in text])  # every answer starts with the same token
