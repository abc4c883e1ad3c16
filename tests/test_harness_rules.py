"""Each meta-harness rule fires on statistics built to trigger it, and stays quiet otherwise."""

from dataclasses import replace

from score.config import HarnessConfig, RulesConfig
from score.harness import DimensionStats, RoundStats, evolve, from_rows, seed_harness, to_rows

RULES = RulesConfig()
QUIET = RoundStats(top_share=0.0, depth_change=0.0)


def healthy(dim: str, **kw) -> DimensionStats:
    base = dict(id=dim, mean=5.0, spread=1.0, detection=0.8, probes=8, max_corr=0.3, max_corr_with="")
    return DimensionStats(**{**base, **kw})


def stats_for(harness, **overrides):
    """Healthy numbers for active dimensions; candidates that do not (yet) discriminate enough to be admitted."""

    def default(d):
        return healthy(d.id) if d.status == "active" else healthy(d.id, spread=0.0)

    return {d.id: overrides.get(d.id, default(d)) for d in harness.dimensions if d.status != "retired"}


def statuses(h):
    return {d.id: d.status for d in h.dimensions}


def test_healthy_statistics_change_nothing():
    h = seed_harness(HarnessConfig())
    new, decisions = evolve(h, stats_for(h), QUIET, RULES, 0)
    assert decisions == [] and statuses(new) == statuses(h) and new.controls == h.controls and new.version == 0


def test_saturation_retires_only_after_m_rounds():
    h = seed_harness(HarnessConfig())
    sat = healthy("readability", mean=9.2, spread=0.1)
    once, d1 = evolve(h, stats_for(h, readability=sat), QUIET, RULES, 0)
    assert statuses(once)["readability"] == "active" and d1 == []
    twice, d2 = evolve(once, stats_for(once, readability=sat), QUIET, RULES, 1)
    assert statuses(twice)["readability"] == "retired" and [d.rule for d in d2] == ["saturation"]
    assert d2[0].numbers["saturated_rounds"] == 2 and "spread" in d2[0].reason
    recovered, _ = evolve(once, stats_for(once), QUIET, RULES, 1)  # a good round resets the count
    assert [d.saturated_rounds for d in recovered.dimensions if d.id == "readability"] == [0]


def test_redundancy_retires_the_dimension_that_spreads_less():
    h = seed_harness(HarnessConfig())
    s = stats_for(
        h,
        insight=healthy("insight", spread=0.4, max_corr=0.99, max_corr_with="comprehensiveness"),
        comprehensiveness=healthy("comprehensiveness", spread=0.9, max_corr=0.99, max_corr_with="insight"),
    )
    new, decisions = evolve(h, s, QUIET, RULES, 0)
    assert statuses(new)["insight"] == "retired" and statuses(new)["comprehensiveness"] == "active"
    assert [d.rule for d in decisions] == ["redundancy"]
    below, none = evolve(
        h, stats_for(h, insight=healthy("insight", max_corr=0.9, max_corr_with="comprehensiveness")), QUIET, RULES, 0
    )
    assert none == []


def test_a_dimension_that_misses_corruptions_is_retired_but_never_below_min_active():
    h = seed_harness(HarnessConfig())
    new, decisions = evolve(h, stats_for(h, insight=healthy("insight", detection=0.2)), QUIET, RULES, 0)
    assert statuses(new)["insight"] == "retired" and decisions[0].rule == "corruption"
    few_probes, quiet = evolve(h, stats_for(h, insight=healthy("insight", detection=0.2, probes=2)), QUIET, RULES, 0)
    assert quiet == []
    bad = {d.id: healthy(d.id, detection=0.0) for d in h.active}
    floor, _ = evolve(h, {**stats_for(h), **bad}, QUIET, RULES, 0)
    assert sum(s == "active" for s in statuses(floor).values()) == RULES.min_active


def test_candidates_are_admitted_or_retired_after_probation():
    h = seed_harness(HarnessConfig())
    good = healthy("factual_accuracy", spread=0.6, detection=0.75)
    admitted, decisions = evolve(h, stats_for(h, factual_accuracy=good), QUIET, RULES, 0)
    assert statuses(admitted)["factual_accuracy"] == "active" and decisions[0].rule == "admission"
    weak = healthy("factual_accuracy", spread=0.05)
    state = h
    for r in range(RULES.max_probation_rounds):
        state, decisions = evolve(state, stats_for(state, factual_accuracy=weak), QUIET, RULES, r)
    assert statuses(state)["factual_accuracy"] == "retired" and decisions[-1].rule == "probation"


def test_a_candidate_no_corruption_probes_is_admitted_on_spread_alone_but_a_thinly_probed_one_waits():
    h = seed_harness(HarnessConfig())
    unprobed = healthy("factual_accuracy", spread=0.6, detection=0.5, probes=0)  # e.g. a proposed dimension
    admitted, decisions = evolve(h, stats_for(h, factual_accuracy=unprobed), QUIET, RULES, 0)
    assert statuses(admitted)["factual_accuracy"] == "active" and "no corruption probes it" in decisions[0].reason
    thin = healthy("factual_accuracy", spread=0.6, detection=1.0, probes=RULES.min_probes - 1)
    waiting, _ = evolve(h, stats_for(h, factual_accuracy=thin), QUIET, RULES, 0)
    assert statuses(waiting)["factual_accuracy"] == "candidate"


def test_proposals_become_candidates_once_and_within_the_limit():
    h = seed_harness(HarnessConfig())
    proposals = RoundStats(
        0.0,
        0.0,
        proposals=(
            ("Source Diversity", "uses several independent sources", "evaluator"),
            ("Timeliness", "uses recent data and says when", "llm controller"),
            ("insight", "duplicate of a seed", "evaluator"),
        ),
    )
    new, decisions = evolve(h, stats_for(h), proposals, RULES, 0)
    assert statuses(new)["source_diversity"] == "candidate" and "timeliness" not in statuses(
        new
    )  # max_new_candidates=1
    assert [d.rule for d in decisions] == ["proposal"]


def test_controls_rise_on_their_triggers_and_stop_at_their_caps():
    h = seed_harness(HarnessConfig())
    new, decisions = evolve(h, stats_for(h), RoundStats(top_share=0.7, depth_change=0.5), RULES, 0)
    assert new.controls.search_depth == h.controls.search_depth + 1 and new.controls.strictness == 1
    assert {d.rule for d in decisions} == {"search_depth", "strictness"}
    capped = replace(
        h, controls=replace(h.controls, search_depth=RULES.max_search_depth, strictness=RULES.max_strictness)
    )
    same, none = evolve(capped, stats_for(capped), RoundStats(top_share=0.9, depth_change=0.9), RULES, 0)
    assert none == [] and same.controls == capped.controls


def test_static_mode_changes_nothing_whatever_the_statistics():
    h = seed_harness(HarnessConfig())
    wild = {
        d.id: healthy(d.id, mean=9.9, spread=0.0, detection=0.0, max_corr=1.0, max_corr_with="insight")
        for d in h.dimensions
    }
    new, decisions = evolve(
        h, wild, RoundStats(1.0, 1.0, (("x_dim", "a brand new dimension", "evaluator"),)), RULES, 3, mode="static"
    )
    assert new.dimensions == h.dimensions and new.controls == h.controls and new.version == 3
    assert [d.rule for d in decisions] == ["static"]


def test_rows_round_trip():
    h = seed_harness(HarnessConfig())
    dims, controls = to_rows(h)
    assert from_rows(dims, controls) == h
