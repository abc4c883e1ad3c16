"""The evaluator, phase 3: `search_depth` claims per report searched (score.evaluator.claims) and judged against the
passages they cite and the passages found. A verdict is an action: the evaluator writes Yes / No / Unclear
(sampled at `evaluate.judge_temperature`, stored as a span the train stage trains on), and beside every claim
it judges an anchor: the same claim with an entity swapped (`score.corrupt.swap_entity`, never a `[n]`
marker), against the same passages. Each verdict of the pair earns `score.rewards.pair_credit` against the other's
restricted distribution (the anchor should get less support than the claim): a self-supervised reward that needs
no gold label, without partner-draw noise. A verdict is drawn from the distribution restricted to the three
answers (`score.evaluator.claims.answer_tokens`), so every verdict parses. Anchors are judged on the reports'
own checks (a corrupted copy's claim may already be wrong); a claim with nothing to swap, or a check without an
anchor, has its verdict recorded, not trained.

On a share of the reports (`evaluate.depth_probe_share`) the same claims are checked again with more search: a
passage more per hop, and one more search call with a query the evaluator writes itself, having seen the titles
its search found (a `followup` span, trained). The signed change of each claim's calibrated support is the
search_hops rule's statistic; the change of its separation from its anchor (calibrated P(yes) of the claim less
that of the anchor) is the follow-up query's reward.

The read-off beside each written verdict: the Yes / No / Unclear probabilities at the same place, divided by
the answer to a content-free check (contextual calibration, Zhao et al., 2021: the base 135M judge answers "No"
to nearly everything). `evaluate.verdict_source` says which of the two the round uses.

Corrupted copies get checks of their own (rows with `probe_kind`), so a copy is judged with its own evidence,
not its original's: a swapped entity can show up as an unsupported claim. Re-checks are drawn over the reports
only.

Faults: an answer that is none of Yes / No / Unclear is unparsable: counted (`verdict_unparsable_rate`), it earns
`reward.unparsable_judgement`, and the round uses its calibrated verdict."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass

from score.corrupt import swap_entity
from score.evaluator.base import Evaluation
from score.evaluator.claims import (
    VERDICTS,
    ClaimSearch,
    Hops,
    parse_verdict,
    pick_claims,
    search_claim,
    short_cited,
    shown_passages,
    support_distribution,
)
from score.models import Backend, Sample, SamplingParams
from score.pipeline import derive_seed
from score.progress import progress_bar
from score.prompts import followup_messages, verdict_parts
from score.rewards import SUPPORT, pair_credit
from score.store.schemas import span_row

PASSAGES_PER_HOP = 2  # passages each search call returns (a re-check with more search takes one more)
FOLLOWUP_TOKENS = 16  # the longest follow-up search query the evaluator writes


@dataclass
class Check:
    """One claim of one report (or copy) to check, and what its search found."""

    report: dict
    deeper: bool
    claim_idx: int
    search: ClaimSearch
    followup_query: str | None = None  # a re-check's own query, which the evaluator wrote ...
    followup_span: dict | None = None  # ... as a trainable span


def _titles(report: dict) -> dict[int, str]:
    return {s["n"]: s["title"] for s in report["sources"]}


def _followups(backend: Backend, checks: list[Check], temperature: float, seed: int) -> list[tuple[str, dict]]:
    """For each claim to re-check, one search query the evaluator writes having seen the titles its search found
    (a trained span; its reward is what the passages it found did to the claim's separation from its anchor): the
    query (its first line) and the span."""
    if not checks:
        return []
    prompts = [
        backend.render(followup_messages(c.search.claim, [p.title for p in c.search.passages]), continue_final=True)
        for c in checks
    ]
    params = SamplingParams(temperature=temperature, max_tokens=FOLLOWUP_TOKENS, stop=("\n",), seed=seed)
    samples = backend.sample(prompts, params, desc="follow-up queries")
    out = []
    for prompt, (sample,) in zip(prompts, samples):
        query = sample.text.strip().split("\n", 1)[0].strip(' "')
        out.append((query, span_row("followup", prompt, sample, temperature)))
    return out


def check_evidence(
    e: Evaluation, reports: list[dict], rng: random.Random, depth_probe_share: float
) -> tuple[list[dict], dict[tuple[str, str], list[str]]]:
    """3. `search_depth` claims per report searched (`search_hops` calls each) and judged Yes / No / Unclear; on a
    share of the reports the same claims are re-checked with more search (a passage more per hop, and a follow-up
    query the evaluator writes), for the search_hops rule: the evidence rows, and per (trajectory, probe kind) the
    lines shown to the evaluator when it scores. `reports` may hold corrupted copies (rows with a non-empty
    `probe_kind`, `report` the copy's text)."""
    originals = [r for r in reports if not r.get("probe_kind")]
    deeper_ids = {r["trajectory_id"] for r in originals if rng.random() < depth_probe_share}
    checks = _first_checks(e, reports)  # a copy shares its original's trajectory id: only originals go deeper
    checks += _deeper_checks(
        e, [c for c in checks if c.report["trajectory_id"] in deeper_ids and not c.report.get("probe_kind")]
    )
    prior = _prior(e.backend, list(e.answer_tokens.candidates))
    rows, text = [], defaultdict(list)
    with progress_bar(total=len(checks), desc=f"round {e.round_idx} evidence", unit="claim", leave=False) as bar:
        for c in checks:
            verdict_columns, shown = _verdicts(e, c, prior)
            row = {
                "round": e.round_idx,
                "query_id": c.report["query_id"],
                "trajectory_id": c.report["trajectory_id"],
                "probe_kind": c.report.get("probe_kind", ""),
                "deeper": c.deeper,
                "claim_idx": c.claim_idx,
                "claim": c.search.claim,
                "cited": c.search.cited,
                "queries": c.search.queries,
                **verdict_columns,
            }
            row |= {"followup_query": c.followup_query, "followup_span": c.followup_span}
            rows.append(row)
            if not c.deeper:
                where = f" {shown[0][1]}" if shown else ""  # the first passage it was checked against
                line = f'- "{c.search.claim[:160]}": {row["verdict"].replace("_", " ")}{where}'
                text[(row["trajectory_id"], row["probe_kind"])].append(line)
            bar.update()
    _followup_rewards(rows)
    return rows, text


def _first_checks(e: Evaluation, reports: list[dict]) -> list[Check]:
    """Each report's `search_depth` claims, each searched with `search_hops` calls."""
    ev, ctl = e.ws.cfg.evaluate, e.harness.controls
    checks = []
    for r in reports:
        for i, (claim, cited) in enumerate(pick_claims(r["report"], ctl.search_depth, ev.claim_min_chars)):
            hops = Hops(ctl.search_hops, PASSAGES_PER_HOP)
            checks.append(Check(r, False, i, search_claim(e.ws.search, claim, cited, _titles(r), r["query"], hops)))
    return checks


def _deeper_checks(e: Evaluation, chosen: list[Check]) -> list[Check]:
    """The same claims of the chosen reports (not their copies) searched more: a passage more per hop, and a
    follow-up query the evaluator writes."""
    probed = [c for c in chosen if not c.report.get("probe_kind")]
    out = []
    for c, (query, span) in zip(probed, _followups(e.backend, probed, e.ws.cfg.evaluate.judge_temperature, e.seed)):
        cs, hops = c.search, Hops(e.harness.controls.search_hops, PASSAGES_PER_HOP + 1, (query,))
        search = search_claim(e.ws.search, cs.claim, cs.cited, _titles(c.report), c.report["query"], hops)
        out.append(Check(c.report, True, c.claim_idx, search, query, span))
    return out


def check_citations(e: Evaluation, reports: list[dict]) -> list[dict]:
    """Each report's first `evaluate.citation_claims` cited sentences, each judged Yes / No / Unclear against the
    passages it cites and nothing else (a citation to a source the report does not have shows nothing: not found),
    with its anchor beside it as every verdict has; and every cited sentence shorter than
    `evaluate.claim_min_chars`, unverified (not found, no verdict written): too short to check is not supported,
    so a report cannot keep its precision by citing only in short sentences. The rows of citations.parquet."""
    ev = e.ws.cfg.evaluate
    if not ev.citation_claims:
        return []
    prior = _prior(e.backend, list(e.answer_tokens.candidates))
    rows = []
    for r in reports:
        claims = [(c, cited) for c, cited in pick_claims(r["report"], ev.citation_claims, ev.claim_min_chars) if cited]
        ids = {"round": e.round_idx, "query_id": r["query_id"], "trajectory_id": r["trajectory_id"]}
        for i, (claim, cited) in enumerate(claims):
            check = Check(r, False, i, ClaimSearch(claim, cited, [], []))  # no search: the cited passages alone
            columns, _ = _verdicts(e, check, prior, "citation")
            rows.append(ids | {"claim_idx": i, "claim": claim, "cited": cited} | columns)
        for i, (claim, cited) in enumerate(short_cited(r["report"], ev.claim_min_chars), start=len(claims)):
            rows.append(ids | {"claim_idx": i, "claim": claim, "cited": cited} | _unverified([]))
    return rows


def _followup_rewards(rows: list[dict]) -> None:
    """A follow-up query's reward: how much the re-check it took part in moved the claim's separation from its
    anchor (calibrated P(yes) of the claim less that of the anchor) over the first check. Evidence that tells a
    claim from its entity-swapped twin is what a search for evidence is for; no gold label needed. None where
    either check has no anchor or showed nothing."""
    first = {
        (r["trajectory_id"], r["claim_idx"]): r["separation"] for r in rows if not r["deeper"] and not r["probe_kind"]
    }  # a corrupted copy shares its original's trajectory id
    for r in rows:
        before = first.get((r["trajectory_id"], r["claim_idx"]))
        has_both = r["followup_span"] is not None and r["separation"] is not None and before is not None
        r["followup_reward"] = r["separation"] - before if has_both else None


def _verdicts(
    e: Evaluation, c: Check, prior: tuple[float, ...], kind: str = "evidence"
) -> tuple[dict, list[tuple[str, str, str]]]:
    """The evidence row's verdict columns for one check (what was shown, what the evaluator wrote on the claim and
    on its anchor, the calibrated read-off, the verdict the round uses, the pair's rewards), and the passages
    shown as (id, label, text)."""
    ev, backend, seed = e.ws.cfg.evaluate, e.backend, e.seed
    shown = shown_passages(c.search, c.report["sources"], ev.passage_chars, ev.cited_passages)
    if not shown:
        return _unverified([]), shown
    out = _unverified([pid for pid, _, _ in shown])
    anchored = not c.report.get("probe_kind")  # a copy's claim may already be wrong
    anchor = swap_entity(c.search.claim, derive_seed(seed, c.claim_idx, c.search.claim)) if anchored else ""
    claims = [c.search.claim] + ([anchor] if anchor and anchor != c.search.claim else [])
    prefix, suffixes = verdict_parts(backend.render, [(label, t) for _, label, t in shown], claims)
    where = f"{c.report['trajectory_id']}/{c.report.get('probe_kind', '')}/{c.deeper}/{c.claim_idx}"
    where += "" if kind == "evidence" else f"/{kind}"  # evidence keeps the seeds it always had
    params = SamplingParams(temperature=ev.judge_temperature, seed=derive_seed(seed, 0, where))
    written = backend.write_scores(prefix, suffixes, e.answer_tokens, params)
    spans, parsed = [], []
    for suffix, w in zip(suffixes, written):
        sample = Sample(backend.decode(w.token_ids), w.token_ids, w.logprobs, "stop", choices=w.choices)
        spans.append(span_row("verdict", suffix, sample, ev.judge_temperature, prefix=prefix))
        parsed.append(parse_verdict(sample.text))
    p = _calibrate(_softmax(written[0].first), prior)
    calibrated = VERDICTS[max(range(3), key=p.__getitem__)]
    used = parsed[0] if ev.verdict_source == "written" and parsed[0] else calibrated
    out |= {"span": spans[0], "written": parsed[0], "p_yes": p[0], "p_no": p[1], "p_unclear": p[2], "verdict": used}
    if len(claims) == 2:
        low = e.ws.cfg.reward.unparsable_judgement
        out |= {"anchor_claim": anchor, "anchor_span": spans[1], "anchor_written": parsed[1]}
        out |= {"separation": p[0] - _calibrate(_softmax(written[1].first), prior)[0]}
        out |= {"reward": low, "anchor_reward": low}
        if parsed[0] is not None and parsed[1] is not None:  # each side against the other's drawn-from distribution
            dists = [support_distribution(w.first, ev.judge_temperature) for w in written]
            out["reward"] = pair_credit(SUPPORT[parsed[0]], dists[1], above=True)
            out["anchor_reward"] = pair_credit(SUPPORT[parsed[1]], dists[0], above=False)
    return out, shown


def _unverified(passage_ids: list[str]) -> dict:
    """A check's verdict columns before (or without) a verdict: not found, nothing written, nothing rewarded."""
    out = {"passage_ids": passage_ids, "anchor_claim": None, "anchor_span": None, "anchor_written": None}
    out |= {"span": None, "written": None, "reward": None, "anchor_reward": None, "separation": None}
    return out | {"p_yes": 0.0, "p_no": 0.0, "p_unclear": 1.0, "verdict": "not_found"}


def _prior(backend: Backend, answer_ids: list[int]) -> tuple[float, ...]:
    """The answer probabilities on a content-free check ("N/A" passage and claim): the calibration prior."""
    prefix, (suffix,) = verdict_parts(backend.render, [("(N/A)", "N/A")], ["N/A"])
    return _softmax(backend.next_token_logprobs(prefix, [suffix], answer_ids)[0])


def _softmax(lps: list[float]) -> tuple[float, ...]:
    m = max(lps)
    e = [math.exp(x - m) for x in lps]
    return tuple(x / sum(e) for x in e)


def _calibrate(p: tuple[float, ...], prior: tuple[float, ...]) -> tuple[float, ...]:
    """Divide answer probabilities by the content-free prior and renormalise.

    >>> [round(x, 2) for x in _calibrate((0.2, 0.8, 0.0), (0.1, 0.9, 0.0))]
    [0.69, 0.31, 0.0]
    """
    q = [x / max(y, 1e-9) for x, y in zip(p, prior)]
    return tuple(x / sum(q) for x in q)
