"""Each meta-harness rule fires on statistics built to cross its threshold, at the threshold's edge, and stays quiet
just inside it. The numbers are the default RulesConfig's (confidence 0.95, one-sided: z = 1.645)."""

from dataclasses import replace

import pytest

from score.config import HarnessConfig, RulesConfig
from score.harness import (
    Alarm,
    DimensionStats,
    Proposal,
    RoundSignals,
    evolve,
    from_rows,
    seed_harness,
    to_rows,
    vocabulary,
)
from score.intervals import correlation_interval, wilson

RULES = RulesConfig()
QUIET = RoundSignals()
Z = 1.6448536269514722


def healthy(dim: str, **kw) -> DimensionStats:
    """Numbers no rule reads as a reason: mid scores with spread, no probes this round, weakly correlated."""
    base = dict(
        id=dim,
        mean=5.0,
        mean_low=4.5,
        reports=8,
        spread=1.0,
        queries=2,
        detected=0.0,
        probes=0,
        probed=True,
        partners=(),
    )
    return DimensionStats(**{**base, **kw})


def stats_for(harness, **overrides):
    """Healthy numbers for active dimensions; candidates that do not (yet) spread enough to be admitted."""

    def default(d):
        return healthy(d.id) if d.status == "active" else healthy(d.id, spread=0.0)

    return {d.id: overrides.get(d.id, default(d)) for d in harness.dimensions if d.status != "retired"}


def statuses(h):
    return {d.id: d.status for d in h.dimensions}


def dim(h, dim_id):
    return next(d for d in h.dimensions if d.id == dim_id)


def test_healthy_statistics_change_nothing():
    h = seed_harness(HarnessConfig())
    new, decisions = evolve(h, stats_for(h), QUIET, RULES, 0)
    assert decisions == [] and statuses(new) == statuses(h) and new.controls == h.controls and new.version == 0


# ---- saturation: harder first, then retired --------------------------------------------------------------------


def saturated(d: str, **kw) -> DimensionStats:
    return healthy(d, **{"mean": 9.2, "mean_low": RULES.saturated_mean, "spread": RULES.saturated_spread, **kw})


def test_saturation_hardens_a_dimension_after_m_rounds_then_retires_it_at_the_cap():
    h = seed_harness(HarnessConfig())
    once, d1 = evolve(h, stats_for(h, readability=saturated("readability")), QUIET, RULES, 0)
    assert d1 == [] and dim(once, "readability").saturated_rounds == 1
    twice, d2 = evolve(once, stats_for(once, readability=saturated("readability")), QUIET, RULES, 1)
    assert [(d.rule, d.target) for d in d2] == [("saturation", "criteria_per_dimension")]  # not an evidence dimension
    assert twice.controls.criteria_per_dimension == 2 and statuses(twice)["readability"] == "active"
    assert d2[0].numbers["low"] == RULES.saturated_mean and d2[0].numbers["n"] == 8
    capped = replace(once, controls=replace(once.controls, criteria_per_dimension=RULES.max_criteria_per_dimension))
    retired, d3 = evolve(capped, stats_for(capped, readability=saturated("readability")), QUIET, RULES, 1)
    assert statuses(retired)["readability"] == "retired" and "at its cap" in d3[0].reason


def test_a_saturated_evidence_dimension_is_hardened_by_checking_more_claims():
    h = seed_harness(HarnessConfig())
    state = h
    for r in range(RULES.saturated_rounds):
        state, decisions = evolve(
            state, stats_for(state, citation_support=saturated("citation_support")), QUIET, RULES, r
        )
    assert state.controls.search_depth == h.controls.search_depth + 1 and decisions[0].target == "search_depth"


@pytest.mark.parametrize(
    "edge",
    [
        {"mean_low": RULES.saturated_mean - 0.01},  # the mean is high, but not surely
        {"spread": RULES.saturated_spread + 0.01},
        {"reports": RULES.min_reports - 1},
        {"queries": RULES.min_queries - 1},
    ],
)
def test_saturation_needs_every_part_of_its_test(edge):
    h = seed_harness(HarnessConfig())
    state = h
    for r in range(RULES.saturated_rounds + 1):
        state, decisions = evolve(
            state, stats_for(state, readability=saturated("readability", **edge)), QUIET, RULES, r
        )
        assert [d for d in decisions if d.rule == "saturation"] == []


# ---- redundancy: within-query correlation, every active partner -------------------------------------------------


def corr_at_bound(n: int, above: bool) -> float:
    """The correlation whose one-sided lower bound over n independent pairs is just above (or below) the bar."""
    lo, hi = 0.0, 0.99999
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if correlation_interval(mid, n, Z)[0] < RULES.redundant_corr else (lo, mid)
    return hi + 1e-6 if above else lo - 1e-6


def test_redundancy_retires_the_dimension_that_spreads_less_when_the_bound_clears_the_bar():
    h = seed_harness(HarnessConfig())
    r = corr_at_bound(6, above=True)
    s = stats_for(
        h,
        insight=healthy("insight", spread=0.4, partners=(("comprehensiveness", r, 6),)),
        comprehensiveness=healthy("comprehensiveness", spread=0.9, partners=(("insight", r, 6),)),
    )
    new, decisions = evolve(h, s, QUIET, RULES, 0)
    assert statuses(new)["insight"] == "retired" and statuses(new)["comprehensiveness"] == "active"
    assert [d.rule for d in decisions] == ["redundancy"] and decisions[0].numbers["low"] >= RULES.redundant_corr
    r = corr_at_bound(6, above=False)
    s["insight"] = healthy("insight", spread=0.4, partners=(("comprehensiveness", r, 6),))
    s["comprehensiveness"] = healthy("comprehensiveness", spread=0.9, partners=(("insight", r, 6),))
    assert evolve(h, s, QUIET, RULES, 0)[1] == []


def test_redundancy_never_retires_below_the_floor_of_active_dimensions():
    h = seed_harness(HarnessConfig())
    ids = [d.id for d in h.active]
    assert len(ids) > RULES.min_active  # else there would be nothing to test
    everyone = {
        a: healthy(a, spread=0.5 + i / 10, partners=tuple((b, 0.99, 40) for b in ids if b != a))
        for i, a in enumerate(ids)
    }  # every pair surely redundant: the halo of a judge
    new, decisions = evolve(h, stats_for(h, **everyone), QUIET, RULES, 0)
    assert sum(s == "active" for s in statuses(new).values()) == RULES.min_active
    assert {d.rule for d in decisions} == {"redundancy"} and len(decisions) == len(ids) - RULES.min_active
    assert all(d.numbers["n"] == 40 and d.numbers["low"] >= RULES.redundant_corr for d in decisions)


def test_redundancy_looks_past_a_candidate_partner_to_an_active_one():
    h = seed_harness(HarnessConfig())  # factual_accuracy is a candidate
    partners = (("factual_accuracy", 0.999, 30), ("readability", 0.999, 30))
    s = stats_for(h, insight=healthy("insight", spread=0.2, partners=partners))
    new, decisions = evolve(h, s, QUIET, RULES, 0)
    assert statuses(new)["insight"] == "retired" and decisions[0].numbers["pair"] == ["insight", "readability"]


# ---- corruption: detection gathered over rounds ----------------------------------------------------------------


def test_corruption_retires_on_the_upper_bound_of_detection_gathered_over_rounds():
    h = seed_harness(HarnessConfig())
    missed = healthy("insight", detected=0.0, probes=2)  # 2 probed reports a round, both missed
    first, none = evolve(h, stats_for(h, insight=missed), QUIET, RULES, 0)
    assert none == [] and dim(first, "insight").probe_n == 2  # 2 < min_probes: it waits, and gathers
    second, decisions = evolve(first, stats_for(first, insight=missed), QUIET, RULES, 1)
    assert statuses(second)["insight"] == "retired" and decisions[0].rule == "corruption"
    assert decisions[0].numbers["n"] == 4 and decisions[0].numbers["high"] < RULES.min_detection
    assert dim(second, "insight").probe_n == 0  # evidence starts afresh with the status


def test_corruption_stays_quiet_when_the_upper_bound_reaches_the_bar():
    h = seed_harness(HarnessConfig())
    n = 20
    k = next(k for k in range(n + 1) if wilson(k, n, Z)[1] >= RULES.min_detection)  # the fewest hits that clear it
    quiet, none = evolve(h, stats_for(h, insight=healthy("insight", detected=float(k), probes=n)), QUIET, RULES, 0)
    assert none == []
    fired, decisions = evolve(h, stats_for(h, insight=healthy("insight", detected=k - 1.0, probes=n)), QUIET, RULES, 0)
    assert [d.rule for d in decisions] == ["corruption"]


def test_retirements_never_go_below_min_active():
    h = seed_harness(HarnessConfig())
    bad = {d.id: healthy(d.id, detected=0.0, probes=10) for d in h.active}
    floor, _ = evolve(h, {**stats_for(h), **bad}, QUIET, RULES, 0)
    assert sum(s == "active" for s in statuses(floor).values()) == RULES.min_active


# ---- probation --------------------------------------------------------------------------------------------------


def test_a_candidate_is_admitted_when_detection_surely_beats_chance_and_it_spreads():
    h = seed_harness(HarnessConfig())
    n = 12
    k = next(k for k in range(n + 1) if wilson(k, n, Z)[0] > RULES.admit_detection)
    good = healthy("factual_accuracy", spread=RULES.admit_spread, detected=float(k), probes=n)
    admitted, decisions = evolve(h, stats_for(h, factual_accuracy=good), QUIET, RULES, 0)
    assert statuses(admitted)["factual_accuracy"] == "active" and decisions[0].rule == "admission"
    short = replace(good, detected=k - 1.0)
    waiting, _ = evolve(h, stats_for(h, factual_accuracy=short), QUIET, RULES, 0)
    assert statuses(waiting)["factual_accuracy"] == "candidate"
    flat = replace(good, spread=RULES.admit_spread - 0.01)
    assert statuses(evolve(h, stats_for(h, factual_accuracy=flat), QUIET, RULES, 0)[0])["factual_accuracy"] == (
        "candidate"
    )


def test_a_candidate_no_corruption_damages_is_admitted_on_spread_and_a_stuck_one_retires():
    h = seed_harness(HarnessConfig())
    unprobed = healthy("factual_accuracy", spread=0.6, probed=False)
    admitted, decisions = evolve(h, stats_for(h, factual_accuracy=unprobed), QUIET, RULES, 0)
    assert statuses(admitted)["factual_accuracy"] == "active" and "no corruption damages it" in decisions[0].reason
    state = h
    for r in range(RULES.max_probation_rounds):
        state, decisions = evolve(
            state, stats_for(state, factual_accuracy=healthy("factual_accuracy", spread=0.0)), QUIET, RULES, r
        )
    assert statuses(state)["factual_accuracy"] == "retired" and decisions[-1].rule == "probation"


# ---- controls ---------------------------------------------------------------------------------------------------


def test_search_hops_rise_when_more_search_surely_moves_the_same_claims_verdicts():
    h = seed_harness(HarnessConfig())
    moved = RoundSignals(
        depth_claims=RULES.min_depth_claims, depth_change=0.3, depth_low=RULES.depth_change + 0.01, depth_high=0.5
    )
    new, decisions = evolve(h, stats_for(h), moved, RULES, 0)
    assert new.controls.search_hops == h.controls.search_hops + 1 and decisions[0].numbers["n"] == 6
    down = replace(moved, depth_change=-0.3, depth_low=-0.5, depth_high=-RULES.depth_change - 0.01)
    assert evolve(h, stats_for(h), down, RULES, 0)[0].controls.search_hops == h.controls.search_hops + 1
    for quiet in (
        replace(moved, depth_low=RULES.depth_change),
        replace(moved, depth_claims=RULES.min_depth_claims - 1),
    ):
        assert evolve(h, stats_for(h), quiet, RULES, 0)[1] == []


def test_strictness_rises_when_fully_valid_reports_surely_crowd_the_top_and_stops_at_its_cap():
    h = seed_harness(HarnessConfig())
    n = 10
    k = next(k for k in range(n + 1) if wilson(k, n, Z)[0] >= RULES.crowded_share)
    new, decisions = evolve(h, stats_for(h), RoundSignals(valid_reports=n, top_reports=k), RULES, 0)
    assert new.controls.strictness == 1 and decisions[0].numbers["low"] >= RULES.crowded_share
    assert evolve(h, stats_for(h), RoundSignals(valid_reports=n, top_reports=k - 1), RULES, 0)[1] == []
    few = RoundSignals(valid_reports=RULES.min_reports - 1, top_reports=RULES.min_reports - 1)
    assert evolve(h, stats_for(h), few, RULES, 0)[1] == []
    capped = replace(h, controls=replace(h.controls, strictness=RULES.max_strictness))
    assert evolve(capped, stats_for(capped), RoundSignals(valid_reports=n, top_reports=n), RULES, 0)[1] == []


# ---- the judge-hacking alarm -----------------------------------------------------------------------------------


def test_the_alarm_fires_when_the_in_loop_reward_rises_and_the_held_out_score_falls_beyond_its_spread():
    h = seed_harness(HarnessConfig())
    gone = evolve(h, stats_for(h, insight=healthy("insight", detected=0.0, probes=8)), QUIET, RULES, 0)[0]
    hacked = RoundSignals(alarm=Alarm(0.05, -0.05, 0.02, (0, 1)))
    new, decisions = evolve(gone, stats_for(gone), hacked, RULES, 1)
    assert [(d.rule, d.target) for d in decisions] == [
        ("alarm", "judge_hacking"),
        ("alarm", "strictness"),
        ("alarm", "insight"),
    ]
    assert new.controls.strictness == 1 and statuses(new)["insight"] == "candidate"
    for calm in (Alarm(-0.01, -0.05, 0.02, (0, 1)), Alarm(0.05, -0.03, 0.02, (0, 1))):  # reward fell; within spread
        assert evolve(gone, stats_for(gone), RoundSignals(alarm=calm), RULES, 1)[1] == []


# ---- proposals: a peer of the rules, capped per source ----------------------------------------------------------


def test_proposals_are_capped_per_source_so_neither_starves_the_other():
    h = seed_harness(HarnessConfig())
    proposals = (
        Proposal("dimension", "Timeliness", "uses recent data and says when", "llm controller"),
        Proposal("dimension", "Depth of Data", "gives figures with units", "llm controller"),
        Proposal("dimension", "Source Diversity", "uses several independent sources", "evaluator"),
        Proposal("dimension", "insight", "duplicate of a seed", "evaluator"),
    )
    new, decisions = evolve(h, stats_for(h), RoundSignals(proposals=proposals), RULES, 0)
    assert statuses(new)["timeliness"] == statuses(new)["source_diversity"] == "candidate"
    assert "depth_of_data" not in statuses(new)  # over each source's cap (1): not looked at
    assert [(d.target, d.action) for d in decisions] == [("timeliness", "candidate"), ("source_diversity", "candidate")]
    duplicate = RoundSignals(proposals=(Proposal("dimension", "Insight", "a seed dimension again", "evaluator"),))
    [refused] = evolve(h, stats_for(h), duplicate, RULES, 0)[1]
    assert (refused.target, refused.action, refused.reason) == (
        "insight",
        "refused",
        "proposed by the evaluator: already in the pool",
    )


def test_a_gibberish_or_unrelated_proposal_is_refused_with_the_counts_it_rested_on():
    h = seed_harness(HarnessConfig())
    vocab = vocabulary(
        ["Kelvin is the base unit of temperature.", "Costa Brava is a coastal region of Catalonia."],
        ["What connects Kelvin and Celsius? Research both and explain the link, citing your sources."],
        [f"{d.id} {d.description}" for d in HarnessConfig().dimensions],
    )
    proposals = (
        Proposal("dimension", "tchaumon_mon_calamita_test", "Test of Tuque in Costa Brava", "evaluator"),
        Proposal("dimension", "coastal_region", "Costa Brava is a coastal region of Catalonia", "evaluator"),
        Proposal(
            "dimension", "unit_sources", "explain the link between Kelvin and the base unit of temperature", "evaluator"
        ),
    )
    new, decisions = evolve(h, stats_for(h), RoundSignals(proposals=proposals, vocabulary=vocab), RULES, 0)
    assert [(d.target, d.action) for d in decisions] == [
        ("tchaumon_mon_calamita_test", "refused"),  # words no text of the run holds
        ("coastal_region", "refused"),  # known words, nothing about the task
        ("unit_sources", "candidate"),
    ]
    gibberish, unrelated, admitted = decisions
    assert gibberish.numbers["name_unknown"] == 4 and "not known" in gibberish.reason
    assert unrelated.numbers["task_words"] == 0 and admitted.numbers["task_words"] >= 1
    assert "tchaumon_mon_calamita_test" not in statuses(new) and statuses(new)["unit_sources"] == "candidate"


def test_a_proposed_retirement_or_control_change_passes_only_where_its_statistic_points_that_way():
    h = seed_harness(HarnessConfig())
    retire = Proposal("retire", "insight", "it never separates reports", "llm controller")
    assert evolve(h, stats_for(h), RoundSignals(proposals=(retire,)), RULES, 0)[1] == []  # healthy: refused
    near_top = stats_for(h, insight=healthy("insight", mean=9.0, spread=0.1))
    new, decisions = evolve(h, near_top, RoundSignals(proposals=(retire,)), RULES, 0)
    assert statuses(new)["insight"] == "retired" and "saturated" in decisions[0].reason
    stricter = Proposal("control", "strictness", "scores bunch at the top", "llm controller")
    assert evolve(h, stats_for(h), RoundSignals(proposals=(stricter,)), RULES, 0)[1] == []
    crowded = RoundSignals(
        valid_reports=3, top_reports=2, proposals=(stricter,)
    )  # too few for the rule, the gate agrees
    assert evolve(h, stats_for(h), crowded, RULES, 0)[0].controls.strictness == 1


def test_static_mode_changes_nothing_whatever_the_statistics():
    h = seed_harness(HarnessConfig())
    wild = {d.id: saturated(d.id, detected=0.0, probes=50, partners=(("insight", 1.0, 50),)) for d in h.dimensions}
    storm = RoundSignals(10, 10, 50, 0.9, 0.8, 1.0, (Proposal("dimension", "x_dim", "a brand new one", "evaluator"),))
    new, decisions = evolve(h, wild, storm, RULES, 3, mode="static")
    assert new.dimensions == h.dimensions and new.controls == h.controls and new.version == 3
    assert [d.rule for d in decisions] == ["static"]


def test_rows_round_trip():
    h = seed_harness(HarnessConfig())
    dims, controls = to_rows(h)
    assert from_rows(dims, controls) == h
