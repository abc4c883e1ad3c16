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

from score.artifacts import ArtifactError, Store, round_dir
from score.runner import STAGES, STAGE_NAMES

_ROUND = re.compile(r"round-(\d{4})$")
KEY_STATS = {  # the few numbers of a stage's manifest worth a glance; the rest is in the stage's own table
    "generate-reports": ("reports", "mean_report_tokens", "truncated_share", "citing_share", "tokens_per_second"),
    "self-evaluate": ("reward_mean", "saturation_rate", "agreement", "detection", "seconds_per_report"),
    "harness-evolve": ("active", "retired", "candidates", "decisions", "search_depth", "strictness"),
    "train": ("samples", "solver_flat_groups", "steps", "loss_last", "kl_mean", "tokens_per_second"),
}


@dataclass
class StageState:
    stage: str
    folder: str  # the stage folder's name inside the round
    state: str  # done | unfinished | not started
    seconds: float | None
    started_at: str | None
    stats: dict[str, Any]


def run_rounds(store: Store, run: str) -> list[int]:
    """Round numbers that have a folder in `run`; raises when the run does not exist."""
    if not store.fs.exists(store.path(run)):
        known = store.list_runs()
        raise ArtifactError(f"run {run!r} not found in {store.url}; runs there: {', '.join(known) or '(none)'}")
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(store.path(run), detail=False)]
    return sorted(int(m.group(1)) for n in names if (m := _ROUND.match(n)))


def finished_rounds(store: Store, run: str, folder: str) -> list[int]:
    """Rounds of `run` whose `folder` stage has a manifest (none when the run does not exist yet)."""
    if not store.fs.exists(store.path(run)):
        return []
    return [r for r in run_rounds(store, run) if store.read_manifest(f"{round_dir(run, r)}/{folder}")]


def stage_states(store: Store, run: str, round_idx: int) -> list[StageState]:
    out = []
    for name in STAGE_NAMES:
        folder = STAGES[name].FOLDER
        path = f"{round_dir(run, round_idx)}/{folder}"
        manifest = store.read_manifest(path)
        if manifest is not None:
            out.append(StageState(name, folder, "done", manifest.get("seconds"), manifest.get("started_at"), manifest.get("stats", {})))
        else:
            state = "unfinished" if store.fs.exists(store.path(path)) else "not started"
            out.append(StageState(name, folder, state, None, None, {}))
    return out


def list_runs_table(store: Store) -> Table:
    table = Table(title=f"runs in {store.url}")
    for col in ("run", "rounds", "last round", "stages done there"):
        table.add_column(col)
    for run in store.list_runs():
        rounds = run_rounds(store, run)
        if not rounds:
            continue
        last = stage_states(store, run, rounds[-1])
        done = [s.stage for s in last if s.state == "done"]
        table.add_row(run, str(len(rounds)), str(rounds[-1]), ", ".join(done) or "(none)")
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
    table = Table(title=f"{run} round {round_idx}")
    for col in ("stage", "state", "seconds", "started", "key numbers"):
        table.add_column(col, overflow="fold")
    for s in states:
        key = ", ".join(f"{k}={_fmt(s.stats[k])}" for k in KEY_STATS[s.stage] if k in s.stats)
        table.add_row(s.stage, s.state, _fmt(s.seconds), (s.started_at or "")[:19], key)
    console.print(table)
    done = {s.stage for s in states if s.state == "done"}
    here = round_dir(run, round_idx)
    wanted = [stage] if stage else list(STAGE_NAMES)
    if "self-evaluate" in wanted and "self-evaluate" in done:
        _evaluate_tables(console, store, f"{here}/evaluate")
    if "harness-evolve" in wanted and "harness-evolve" in done:
        _harness_tables(console, store, f"{here}/harness")
    if "train" in wanted and "train" in done:
        _train_tables(console, store, f"{here}/train")
    if "generate-reports" in wanted and "generate-reports" in done:
        _sample(console, store, here, "self-evaluate" in done)
    for s in states:
        if s.stage in wanted and s.state != "done":
            console.print(f"[dim]{s.stage}: {s.state}[/]")


def _evaluate_tables(console: Console, store: Store, folder: str) -> None:
    summary = store.read_table(folder, "summary.parquet").to_pylist()[0]
    t = Table(title="self-evaluate: the round")
    t.add_column("statistic")
    t.add_column("value", overflow="fold")
    for key, label in [
        ("saturation_rate", "saturation (queries with flat rewards)"), ("reward_mean", "solver reward, mean"),
        ("reward_spread", "solver reward, mean within-query std"), ("valid_share", "valid reports"),
        ("agreement", "evaluator pass-to-pass agreement"), ("detection", "corruption detection (chance 0.5)"),
        ("parse_repair_rate", "rubrics needing repair"), ("supported_share", "claims supported by evidence"),
        ("search_depth", "search depth"), ("strictness", "strictness"), ("active_dimensions", "active dimensions"),
    ]:
        value = summary[key]
        t.add_row(label, ", ".join(value) if isinstance(value, list) else _fmt(value))
    console.print(t)
    rewards = store.read_table(folder, "solver_rewards.parquet").to_pylist()
    per_query: dict[str, list[float]] = {}
    for r in rewards:
        per_query.setdefault(r["query_id"], []).append(r["reward"])
    t = Table(title="solver reward per query (a flat group has no GRPO signal)")
    for col in ("query", "reports", "rewards", "mean", "std", "flat"):
        t.add_column(col)
    stds = {r["query_id"]: r["group_std"] for r in rewards}
    flat = store.read_manifest(folder)["config"]["reward"]["flat_spread"]  # the threshold the round's saturation used
    for q, rs in per_query.items():
        t.add_row(q, str(len(rs)), " ".join(f"{x:.2f}" for x in rs), _fmt(sum(rs) / len(rs)), _fmt(stds[q]), "yes" if stds[q] < flat else "")
    console.print(t)
    dims = store.read_table(folder, "dimension_stats.parquet").to_pylist()
    t = Table(title="dimensions")
    for col in ("dimension", "status", "mean /10", "spread", "detection", "probes", "max corr"):
        t.add_column(col)
    for d in dims:
        t.add_row(d["dimension"], d["status"], _fmt(d["mean"]), _fmt(d["spread"]), _fmt(d["detection"]), str(d["probes"]), f"{_fmt(d['max_corr'])} {d['max_corr_with']}")
    console.print(t)


def _harness_tables(console: Console, store: Store, folder: str) -> None:
    t = Table(title="harness-evolve: decisions")
    for col in ("rule", "target", "action", "reason"):
        t.add_column(col, overflow="fold")
    for d in store.read_table(folder, "decisions.parquet").to_pylist():
        t.add_row(d["rule"], d["target"], d["action"], d["reason"])
    console.print(t)


def _train_tables(console: Console, store: Store, folder: str) -> None:
    steps = store.read_table(folder, "steps.parquet").to_pylist()
    if not steps:
        console.print("[bold]train:[/] no optimizer step: every group was flat (see the saturation above)")
        return
    t = Table(title="train: optimizer steps")
    for col in ("step", "samples", "tokens", "loss", "pg", "kl", "clip", "ratio", "grad norm", "lr", "s"):
        t.add_column(col)
    for s in steps:
        t.add_row(*(_fmt(s[k]) for k in ("step", "samples", "tokens", "loss", "pg", "kl", "clip_frac", "ratio_mean", "grad_norm", "lr", "seconds")))
    console.print(t)


def _sample(console: Console, store: Store, here: str, evaluated: bool) -> None:
    """One report of the round with its rubric, evidence checks and scores (the first query's first report)."""
    reports = store.read_table(f"{here}/generate", "reports.parquet").to_pylist()
    r = min(reports, key=lambda x: (x["query_id"], x["sample_idx"]))
    console.rule(f"sample: {r['query_id']} report {r['sample_idx']} ({r['checkpoint']})")
    console.print(f"[bold]query:[/] {r['query']}", highlight=False)
    console.print(f"[bold]plan:[/] {r['plan']}", highlight=False)
    console.print(f"[bold]report[/] ({r['finish_reason']}, cites {r['cited']}):\n{r['report']}", highlight=False)
    if not evaluated:
        return
    rubric = [x for x in store.read_table(f"{here}/evaluate", "rubrics.parquet").to_pylist() if x["query_id"] == r["query_id"]][0]
    console.print(f"[bold]rubric 0[/] ({rubric['status']}): weights " + json.dumps({w["dimension"]: round(w["weight"], 2) for w in rubric["weights"]}), highlight=False)
    for c in rubric["criteria"]:
        console.print(f"  - {c['dimension']}{' (shadow)' if c['shadow'] else ''}: {c['text']}", highlight=False)
    for e in store.read_table(f"{here}/evaluate", "evidence.parquet").to_pylist():
        if e["trajectory_id"] == r["trajectory_id"] and not e["deeper"]:
            console.print(f"  evidence: \"{e['claim'][:120]}\" -> {e['verdict']} (p_yes {e['p_yes']:.2f})", highlight=False)
    # streamed: a round holds millions of score rows, this table a few dozen
    original = (pc.field("probe_kind") == "") | pc.field("probe_kind").is_null()
    wanted = (pc.field("trajectory_id") == r["trajectory_id"]) & original & (pc.field("rubric_idx") == 0)
    columns = ["trajectory_id", "probe_kind", "rubric_idx", "pass_idx", "dimension", "expected", "score"]
    scores = [s for b in store.iter_batches(f"{here}/evaluate", "scores.parquet", columns=columns) for s in b.filter(wanted).to_pylist()]
    t = Table(title="scores (rubric 0)")
    for col in ("dimension", "pass", "expected", "score"):
        t.add_column(col)
    for s in scores:
        t.add_row(s["dimension"], str(s["pass_idx"]), _fmt(s["expected"]), _fmt(s["score"]))
    console.print(t)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def stage_markdown(store: Store, run: str, round_idx: int, stage: str) -> str:
    """A markdown page for one finished stage: its key numbers, one sample, and its files (for the Prefect UI)."""
    here = round_dir(run, round_idx)
    folder = f"{here}/{STAGES[stage].FOLDER}"
    manifest = store.read_manifest(folder) or {}
    lines = [f"# {stage}, round {round_idx} of `{run}`", ""]
    stats = manifest.get("stats", {})
    lines += ["| statistic | value |", "|---|---|"] + [f"| {k} | {_md(_fmt(v))} |" for k, v in stats.items()] + [""]
    if stage == "generate-reports":
        r = min(store.read_table(folder, "reports.parquet").to_pylist(), key=lambda x: (x["query_id"], x["sample_idx"]))
        lines += [f"## Sample: {r['query_id']}, report {r['sample_idx']} ({r['finish_reason']}, cites {r['cited']})", "",
                  f"**Query.** {r['query'][:600]}", "", f"**Plan.** {'; '.join(r['plan'])}", "", "**Report.**", "", _quote(r["report"]), ""]
    elif stage == "self-evaluate":
        rubric = store.read_table(folder, "rubrics.parquet").to_pylist()[0]
        lines += [f"## Sample rubric: {rubric['query_id']}, rubric 0 ({rubric['status']})", ""]
        lines += [f"- **{w['dimension']}** weight {w['weight']:.2f}" for w in rubric["weights"]]
        lines += [f"- criterion ({c['dimension']}{', shadow' if c['shadow'] else ''}): {_md(c['text'])}" for c in rubric["criteria"]] + [""]
        rewards = store.read_table(folder, "solver_rewards.parquet").to_pylist()
        lines += ["## Solver rewards", "", "| query | trajectory | validity | score | reward | group std |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['query_id']} | {r['trajectory_id'][:8]} | {_fmt(r['validity'])} | {_fmt(r['score'])} | {_fmt(r['reward'])} | {_fmt(r['group_std'])} |" for r in rewards]
        lines.append("")
    elif stage == "harness-evolve":
        lines += ["## Decisions", "", "| rule | target | action | reason |", "|---|---|---|---|"]
        lines += [f"| {d['rule']} | {d['target']} | {d['action']} | {_md(d['reason'])} |" for d in store.read_table(folder, "decisions.parquet").to_pylist()]
        lines.append("")
    elif stage == "train":
        lines += ["## Optimizer steps", "", "| step | samples | loss | kl | clip | grad norm | lr |", "|---|---|---|---|---|---|---|"]
        lines += [
            f"| {s['step']} | {s['samples']} | {_fmt(s['loss'])} | {_fmt(s['kl'])} | {_fmt(s['clip_frac'])} | {_fmt(s['grad_norm'])} | {_fmt(s['lr'])} |"
            for s in store.read_table(folder, "steps.parquet").to_pylist()
        ] or ["| (none: every group was flat) | | | | | | |"]
        lines.append("")
    lines += ["## Files", ""] + [f"- `{store.display(folder, name)}` ({info['rows']} rows, {info['bytes']:,} bytes)" for name, info in manifest.get("files", {}).items()]
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in text.splitlines()) or "> (empty)"
