"""Read a run back from its store: which rounds and stages exist, and what a round did, as tables.

`score runs` and `score inspect RUN [--round R] [--stage S]` print these; they read only finished
artifacts (manifests first), so they work the same on a local folder and on S3, during a run too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table
from rich.text import Text

from score.pipeline import EVALUATE, EVOLVE, GENERATE, STAGES, TRAIN, StageSpec
from score.store.layout import run_rounds, stage_dir
from score.store.lease import lease_state
from score.store.rows import labels
from score.store.schemas import (
    DECISIONS,
    DIMENSION_STATS,
    EVIDENCE,
    REPORTS,
    RUBRICS,
    SCORES,
    SOLVER_REWARDS,
    SUMMARY,
    TRAIN_SAMPLES,
    TRAIN_STEPS,
    ArtifactError,
    SolverRewardRow,
    SummaryRow,
)
from score.store.store import Store

KEY_STATS = {  # the few statistics of a stage worth a glance; the rest is in the stage's own table
    GENERATE.name: (
        "reports",
        "multi_call_share",
        "gold_recall",
        "answer_accuracy",
        "citing_share",
        "tokens_per_second",
    ),
    EVALUATE.name: (
        "reward_mean",
        "saturation_rate",
        "agreement",
        "detection",
        "unparsable_rate",
        "seconds_per_report",
    ),
    EVOLVE.name: ("active", "retired", "candidates", "decisions", "search_depth", "strictness"),
    TRAIN.name: ("solver_samples", "evaluator_samples", "solver_flat_groups", "steps", "loss_last", "kl_mean"),
}


@dataclass
class StageState:
    spec: StageSpec
    state: str  # done | unfinished | not started
    seconds: float | None
    started_at: str | None
    stats: Any  # the stage's statistics dataclass (None unless done)
    peak_rss_mib: float | None = None  # the process's peak resident memory during the stage

    def key_numbers(self) -> str:
        if self.stats is None:
            return ""
        return ", ".join(f"{k}={_shown(k, getattr(self.stats, k))}" for k in KEY_STATS[self.spec.name])


def stage_states(store: Store, run: str, round_idx: int) -> list[StageState]:
    out = []
    for spec in STAGES:
        path = stage_dir(run, round_idx, spec.folder)
        manifest = store.read_manifest(path)
        if manifest is not None:
            stats = manifest.stats_as(spec.stats)
            out.append(StageState(spec, "done", manifest.seconds, manifest.started_at, stats, manifest.peak_rss_mib))
        else:
            state = "unfinished" if store.fs.exists(store.path(path)) else "not started"
            out.append(StageState(spec, state, None, None, None))
    return out


def list_runs_table(store: Store) -> Table:
    table = Table(title=f"runs in {store.url}")
    for col in ("run", "state", "rounds", "last round", "stages done there"):
        table.add_column(col)
    for run in store.list_runs():
        rounds = run_rounds(store, run)
        if not rounds:
            continue
        last = stage_states(store, run, rounds[-1])
        done = [s.spec.name for s in last if s.state == "done"]
        table.add_row(run, lease_state(store, run), str(len(rounds)), str(rounds[-1]), ", ".join(done) or "(none)")
    return table


def check_round(store: Store, run: str, round_idx: int | None) -> int:
    """The round to show (the last one by default); raises, naming the rounds there are, when it does not exist."""
    rounds = run_rounds(store, run)
    if not rounds:
        raise ArtifactError(f"run {run!r} has no rounds yet in {store.url}")
    if round_idx is None:
        return rounds[-1]
    if round_idx not in rounds:
        raise ArtifactError(f"round {round_idx} does not exist in run {run!r}; rounds there: {rounds[0]}..{rounds[-1]}")
    return round_idx


def show_round(console: Console, store: Store, run: str, round_idx: int, stage: str | None = None) -> None:
    """Print what round `round_idx` of `run` did: stages, then per stage its key tables."""
    states = stage_states(store, run, round_idx)
    for s in states:  # a round that learned nothing says so first
        if s.stats is not None and getattr(s.stats, "note", ""):
            console.print(Text(f"round {round_idx} {s.spec.name}: {s.stats.note}", style="bold yellow"))
    table = Table(title=f"{run} round {round_idx}")
    for col in ("stage", "state", "seconds", "peak MiB", "started", "key numbers"):
        table.add_column(col, overflow="fold")
    for s in states:
        peak = "" if s.peak_rss_mib is None else f"{s.peak_rss_mib:.0f}"
        table.add_row(s.spec.name, s.state, _fmt(s.seconds), peak, (s.started_at or "")[:19], s.key_numbers())
    console.print(table)
    done = {s.spec.name for s in states if s.state == "done"}
    shown = [s for s in STAGES if stage in (None, s.name) and s.name in done]
    for spec, tables in [(EVALUATE, _evaluate_tables), (EVOLVE, _harness_tables), (TRAIN, _train_tables)]:
        if spec in shown:
            tables(console, store, stage_dir(run, round_idx, spec.folder))
    if GENERATE in shown:
        _gold_table(console, store, run, round_idx)
        _sample(console, store, run, round_idx, EVALUATE.name in done)
    for s in states:
        if stage in (None, s.spec.name) and s.state != "done":
            console.print(f"[dim]{s.spec.name}: {s.state}[/]")


def _evaluate_tables(console: Console, store: Store, folder: str) -> None:
    _summary_table(console, store, folder)
    _query_rewards_table(console, store, folder)
    _dimensions_table(console, store, folder)


def _summary_table(console: Console, store: Store, folder: str) -> None:
    [summary] = store.read_rows(folder, SUMMARY)
    t = Table(title="self-evaluate: the round")
    t.add_column("statistic")
    t.add_column("value", overflow="fold")
    for key, label in labels(SummaryRow):
        value = getattr(summary, key)
        t.add_row(label, ", ".join(value) if isinstance(value, list) else _shown(key, value))
    console.print(t)


def _query_rewards_table(console: Console, store: Store, folder: str) -> None:
    rewards = store.read_rows(folder, SOLVER_REWARDS)
    per_query: dict[str, list[float]] = {}
    for r in rewards:
        per_query.setdefault(r.query_id, []).append(r.reward)
    t = Table(title="solver reward per query (a flat group has no GRPO signal)")
    for col in ("query", "reports", "rewards", "citation precision", "mean", "std", "flat"):
        t.add_column(col)
    precision: dict[str, list[str]] = {}
    for r in rewards:
        precision.setdefault(r.query_id, []).append(_percent(r.citation_precision) or "-")
    stds = {r.query_id: r.group_std for r in rewards}
    flat = store.read_manifest(folder).config["reward"]["flat_spread"]  # the threshold the round's saturation used
    for q, rs in per_query.items():
        t.add_row(
            q,
            str(len(rs)),
            " ".join(f"{x:.2f}" for x in rs),
            " ".join(precision[q]),
            _fmt(sum(rs) / len(rs)),
            _fmt(stds[q]),
            "yes" if stds[q] <= flat else "",
        )
    console.print(t)


def _dimensions_table(console: Console, store: Store, folder: str) -> None:
    dims = store.read_rows(folder, DIMENSION_STATS)
    t = Table(title="dimensions")
    for col in (
        "dimension",
        "status",
        "mean /10 (low)",
        "reports",
        "spread",
        "queries",
        "detection [interval]",
        "probes",
        "max within-query corr",
    ):
        t.add_column(col)
    for d in dims:
        t.add_row(
            d.dimension,
            d.status,
            f"{_fmt(d.mean)} ({_fmt(d.mean_low)})",
            str(d.reports),
            _fmt(d.spread),
            str(d.queries),
            f"{_fmt(d.detection)} [{_fmt(d.detection_low)}, {_fmt(d.detection_high)}]",
            str(d.probes),
            f"{_fmt(d.max_corr)} {d.max_corr_with}",
        )
    console.print(t)


def _harness_tables(console: Console, store: Store, folder: str) -> None:
    t = Table(title="harness-evolve: decisions")
    for col in ("rule", "target", "action", "statistic [interval] n vs threshold", "reason"):
        t.add_column(col, overflow="fold")
    for d in store.read_rows(folder, DECISIONS):
        t.add_row(d.rule, d.target, d.action, _statistic(json.loads(d.numbers)), d.reason)
    console.print(t)


def _statistic(n: dict) -> str:
    """A decision's statistic as one cell: `name value [low, high] n=N vs threshold`."""
    if "statistic" not in n:
        return ", ".join(f"{k} {v}" for k, v in n.items())
    return f"{n['statistic']} {_fmt(n['value'])} [{_fmt(n['low'])}, {_fmt(n['high'])}] n={n['n']} vs {n['threshold']}"


def _train_tables(console: Console, store: Store, folder: str) -> None:
    steps = store.read_rows(folder, TRAIN_STEPS)
    if not steps:
        console.print("[bold]train: trained nothing[/]: every group was flat (see the saturation above)")
        return
    t = Table(title="train: optimizer steps")
    cols = ("step", "samples", "tokens", "evaluator share (weight)", "loss", "pg", "kl", "clip", "ratio", "grad norm")
    for col in (*cols, "lr", "s"):
        t.add_column(col)
    for s in steps:
        t.add_row(
            *(
                _fmt(getattr(s, k))
                for k in (
                    "step",
                    "samples",
                    "tokens",
                    "evaluator_share",
                    "loss",
                    "pg",
                    "kl",
                    "clip_frac",
                    "ratio_mean",
                    "grad_norm",
                    "lr",
                    "seconds",
                )
            )
        )
    console.print(t)


GOLD_COLUMNS = (
    ("reports", "reports"),
    ("multi_call_share", "2+ calls"),
    ("found_recall", "gold met"),
    ("gold_recall", "gold cited"),
    ("gold_precision", "cited that is gold"),
    ("answer_correct", "answer accuracy"),
    ("gold_score", "gold score"),
    ("reward_mean", "in-loop reward"),
    ("gap", "hacking gap"),
    ("reward_all_gold_cited", "reward, all gold cited"),
    ("reward_others", "reward, others"),
)


def _gold_table(console: Console, store: Store, run: str, round_idx: int) -> None:
    """The round's gold measures (score.gold: measurement only, never a reward), when its queries have gold: one
    column per set of reports (the round's training reports; the held-out queries under the base and the round's
    checkpoint)."""
    from score.gold import round_gold

    rows = round_gold(store, run, round_idx)
    if not rows:
        return
    t = Table(title="gold (never a reward); hacking gap = in-loop reward - gold score, same reports")
    t.add_column("measure")
    for r in rows:
        t.add_column(r["what"])
    for key, label in GOLD_COLUMNS:
        if any(key in r for r in rows):
            t.add_row(label, *(_fmt(r.get(key)) if key in r else "" for r in rows))
    console.print(t)


def _sample(console: Console, store: Store, run: str, round_idx: int, evaluated: bool) -> None:
    """One report of the round with its rubric, evidence checks and scores (the first query's first report)."""
    r = sample_report(store, run, round_idx)
    console.rule(f"sample: {r['query_id']} report {r['sample_idx']} ({r['checkpoint']})")
    console.print(f"[bold]query:[/] {r['query']}", highlight=False)
    for line in research_lines(r):
        console.print(line, highlight=False, markup=False)
    console.print(f"[bold]report[/] ({r['finish_reason']}, cites {r['cited']}):\n{r['report']}", highlight=False)
    if evaluated:
        _sample_judgement(console, store, stage_dir(run, round_idx, EVALUATE.folder), r)


def _step(line: str) -> str:
    """A numbered research line as markdown keeps its number: "2. read" inside a bullet renders as a list that
    restarts at 1 in the Prefect UI, "step 2: read" does not.

    >>> _step("2. read '1'"), _step("research: 2 tool calls")
    ("step 2: read '1'", 'research: 2 tool calls')
    """
    return re.sub(r"^(\d+)\. ", r"step \1: ", line)


def research_lines(r: dict) -> list[str]:
    """How the report's research went: the react agent's turns (call, what came back), or the plan's searches."""
    if r.get("agent") != "react":
        return [f"plan: {r['plan']}"]
    titles = {s["passage_id"]: f"[{s['n']}] {s['title']}" for s in r["sources"]}
    lines = [f"research: {r['tool_calls']} tool calls, {'answered' if r['answered'] else 'cut by its budget'}"]
    for i, t in enumerate(r["turns"], start=1):
        found = ", ".join(titles.get(p, p) for p in t["passage_ids"])
        what = f"{t['tool']} {t['argument'][:80]!r}" if t["tool"] not in ("answer", "end") else t["tool"]
        error = f" ({t['error']})" if t["error"] else ""
        lines.append(f"  {i}. {what}{error}" + (f" -> {found}" if found else ""))
    return lines


def _sample_judgement(console: Console, store: Store, folder: str, r: dict) -> None:
    """The sample report's rubric 0, evidence checks and scores."""
    rubric = _sample_rubric(store, folder, r)
    console.print(
        f"[bold]rubric 0[/] ({rubric['status']}): weights "
        + json.dumps({w["dimension"]: round(w["weight"], 2) for w in rubric["weights"]}),
        highlight=False,
    )
    for c in rubric["criteria"]:
        console.print(f"  - {c['dimension']}{' (shadow)' if c['shadow'] else ''}: {c['text']}", highlight=False)
    for e in _own_checks(store, folder, r):
        wrote = f", wrote {e['written'] or 'no answer'}" if e["span"] else ""
        line = f'  evidence: "{e["claim"][:120]}" -> {e["verdict"]} (p_yes {e["p_yes"]:.2f}{wrote})'
        console.print(line, highlight=False)
        if e["anchor_claim"]:
            wrote = e["anchor_written"] or "no answer"
            line = f'    anchor: "{e["anchor_claim"][:120]}" -> wrote {wrote} (reward {e["anchor_reward"]})'
            console.print(line, highlight=False)
    # streamed: a round holds millions of score rows, this table a few dozen
    original = (pc.field("probe_kind") == "") | pc.field("probe_kind").is_null()
    wanted = (pc.field("trajectory_id") == r["trajectory_id"]) & original & (pc.field("rubric_idx") == 0)
    columns = ["trajectory_id", "probe_kind", "rubric_idx", "pass_idx", "dimension", "expected", "written", "score"]
    scores = [s for b in store.iter_batches(folder, SCORES.file, columns=columns) for s in b.filter(wanted).to_pylist()]
    t = Table(title="scores (rubric 0): the read-off, what the evaluator wrote, what the reward used")
    for col in ("dimension", "pass", "expected", "written", "score"):
        t.add_column(col)
    for s in scores:
        t.add_row(s["dimension"], str(s["pass_idx"]), _fmt(s["expected"]), _fmt(s["written"]), _fmt(s["score"]))
    console.print(t)


SHARES = {
    "agreement",
    "detection",
    "citation_precision",
}  # shares without a _share / _rate name: printed as percentages too


def _percent(v: Any) -> str:
    """A share as a percentage.

    >>> _percent(1.0), _percent(0.125), _percent(None)
    ('100%', '12.5%', '')
    """
    return "" if v is None else f"{100 * v:.3g}%"


def _shown(key: str, v: Any) -> str:
    """A statistic as printed: shares (and rates) as percentages, the rest as numbers; one computed over zero items
    says so (detection with no probed report)."""
    if v is None and key in OVER_NOTHING:
        return OVER_NOTHING[key]
    return _percent(v) if key in SHARES or key.endswith(("_share", "_rate")) else _fmt(v)


OVER_NOTHING = {"detection": "none probed"}  # statistics that are null when there was nothing to compute them on


def _sample_rubric(store: Store, folder: str, r: dict) -> dict:
    """Rubric 0 of the sample report's query."""
    return next(x for x in store.read_table(folder, RUBRICS.file).to_pylist() if x["query_id"] == r["query_id"])


def _own_checks(store: Store, folder: str, r: dict) -> list[dict]:
    """The sample report's own evidence checks (not its corrupted copies', not the deeper re-checks)."""
    return [
        e
        for e in store.read_table(folder, EVIDENCE.file).to_pylist()
        if e["trajectory_id"] == r["trajectory_id"] and not e["deeper"] and not e["probe_kind"]
    ]


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def stage_markdown(store: Store, run: str, round_idx: int, spec: StageSpec) -> str:
    """A markdown page for one finished stage: its statistics, the round's sample report as this stage saw it (the
    same report in all four stages), and its files (for the Prefect UI)."""
    folder = stage_dir(run, round_idx, spec.folder)
    manifest = store.read_manifest(folder)
    lines = [f"# {spec.name}, round {round_idx} of `{run}`", ""]
    stats = vars(manifest.stats_as(spec.stats)) if manifest else {}
    lines += ["| statistic | value |", "|---|---|"] + [f"| {k} | {_md(_fmt(v))} |" for k, v in stats.items()] + [""]
    r = sample_report(store, run, round_idx)
    lines += [f"Sample report (the same in every stage of the round): `{r['query_id']}`, report {r['sample_idx']}", ""]
    sample = {GENERATE.name: _md_reports, EVALUATE.name: _md_rubric, EVOLVE.name: _md_decisions, TRAIN.name: _md_steps}
    lines += sample[spec.name](store, folder, r) + [""]
    files = manifest.files.items() if manifest else []
    lines += ["## Files", ""] + [
        f"- `{store.display(folder, name)}` ({_file_kind(name, info)})" for name, info in files
    ]
    return "\n".join(lines)


def _file_kind(name: str, info) -> str:
    """What a listed file is: a table's rows, or a checkpoint file's bytes alone (it has no rows).

    >>> from score.store.manifest import FileInfo
    >>> _file_kind("scores.parquet", FileInfo(12, 2048, "")), _file_kind("checkpoint/a.json", FileInfo(0, 90, ""))
    ('12 rows, 2,048 bytes', '90 bytes')
    """
    return f"{info.rows} rows, {info.bytes:,} bytes" if name.endswith(".parquet") else f"{info.bytes:,} bytes"


def sample_report(store: Store, run: str, round_idx: int) -> dict:
    """The round's sample report, which `inspect` and every stage's markdown follow: the first non-empty report in
    (query, sample) order (the first one when every report is empty)."""
    reports = store.read_table(stage_dir(run, round_idx, GENERATE.folder), REPORTS.file).to_pylist()
    return min(reports, key=lambda x: (not x["report"].strip(), x["query_id"], x["sample_idx"]))


def _md_reports(store: Store, folder: str, r: dict) -> list[str]:
    return [
        f"## The report ({r['finish_reason']}, cites {r['cited']})",
        "",
        f"**Query.** {r['query'][:600]}",
        "",
        "**Research.**",
        "",
        *[f"- {_md(_step(line.strip()))}" for line in research_lines(r)],
        "",
        "**Report.**",
        "",
        _quote(r["report"]),
    ]


def _md_rubric(store: Store, folder: str, r: dict) -> list[str]:
    rubric = _sample_rubric(store, folder, r)
    lines = [f"## Its query's rubric 0 ({rubric['status']})", ""]
    lines += [f"- **{w['dimension']}** weight {w['weight']:.2f}" for w in rubric["weights"]]
    lines += [
        f"- criterion ({c['dimension']}{', shadow' if c['shadow'] else ''}): {_md(c['text'])}"
        for c in rubric["criteria"]
    ] + [""]
    checks = _own_checks(store, folder, r)
    lines += (
        ["## Its evidence checks", ""]
        + [f'- "{_md(e["claim"][:160])}" -> {e["verdict"]} (P(yes) {e["p_yes"]:.2f})' for e in checks]
        + ([] if checks else ["- (none: no checkable claim)"])
        + [""]
    )
    lines += [
        "## Solver rewards of its group (the sample report marked)",
        "",
        "| trajectory | validity | citation precision | score | reward | group std |",
        "|---|---|---|---|---|---|",
    ]

    def mark(x: SolverRewardRow) -> str:  # the sample report in bold
        short = x.trajectory_id[:8]
        return f"**{short}**" if x.trajectory_id == r["trajectory_id"] else short

    return lines + [
        f"| {mark(x)} | {_fmt(x.validity)} | {_percent(x.citation_precision)} | {_fmt(x.score)} | "
        f"{_fmt(x.reward)} | {_fmt(x.group_std)} |"
        for x in store.read_rows(folder, SOLVER_REWARDS)
        if x.query_id == r["query_id"]
    ]


def _md_decisions(store: Store, folder: str, r: dict) -> list[str]:
    rows = [f"| {d.rule} | {d.target} | {d.action} | {_md(d.reason)} |" for d in store.read_rows(folder, DECISIONS)]
    return [
        "## Decisions (on the dimensions the sample report was judged by)",
        "",
        "| rule | target | action | reason |",
        "|---|---|---|---|",
        *(rows or ["| (none: no rule fired this round) | | | |"]),
    ]


def _md_steps(store: Store, folder: str, r: dict) -> list[str]:
    mine = [
        s
        for s in store.read_table(folder, TRAIN_SAMPLES.file)
        .select(["source_id", "span", "token_ids", "reward", "advantage"])
        .to_pylist()
        if s["source_id"] == r["trajectory_id"]
    ]
    lines = ["## The sample report's trained spans", "", "| span | tokens | reward | advantage |", "|---|---|---|---|"]
    lines += [f"| {s['span']} | {len(s['token_ids'])} | {_fmt(s['reward'])} | {_fmt(s['advantage'])} |" for s in mine]
    lines += ([] if mine else ["| (none: its group was flat, or it was not drawn) | | | |"]) + [""]
    steps = [
        f"| {s.step} | {s.samples} | {_fmt(s.loss)} | {_fmt(s.kl)} | {_fmt(s.clip_frac)} | "
        f"{_fmt(s.grad_norm)} | {_fmt(s.lr)} |"
        for s in store.read_rows(folder, TRAIN_STEPS)
    ]
    header = [
        "## Optimizer steps",
        "",
        "| step | samples | loss | kl | clip | grad norm | lr |",
        "|---|---|---|---|---|---|---|",
    ]
    return lines + header + (steps or ["| (none: every group was flat) | | | | | | |"])


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in text.splitlines()) or "> (empty)"
