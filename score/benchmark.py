"""Benchmark evaluation, RACE-style, on DeepResearch Bench: does a checkpoint write better reports than a reference?

Per task the checkpoint's solver writes one report with the research loop of generate-reports (plan, search,
cited report). A frozen judge scores it and a reference report (by default the base model's own report for
the task, so 0.5 means "no change") in the same prompt, on each of the task's criteria, 0 to 10. With the
criterion weights w_c of a dimension and the task's dimension weights W_d:

    S_d = sum_c w_c s_c          S = sum_d W_d S_d          score = S_tgt / (S_tgt + S_ref)

and per dimension S_d,tgt / (S_d,tgt + S_d,ref). The judge runs once per seed of `benchmark.judge.seeds`
(at least 3: single RACE runs are known to vary); runs alternate which report is Article 1 (position bias).
The benchmark score of a run is the mean over tasks; what is reported is the mean over runs and their spread.

Judges: a local judge (the base model, frozen, or any model through the backends) has its scores read off
the score-token probabilities (one forward per criterion and article over a shared encoding of the task and
both reports), and each run draws every score from those distributions with its own seed, which is what
sampling a judge's answer does, made explicit. An endpoint judge writes its scores as text, one request
per task and run, at `judge.temperature` with the run's seed.

Outputs (`{run}/benchmark/{checkpoint}/`, checkpoint = base, round-NNNN or folder-HASH): judgements.parquet
(every criterion's two scores per run), task_scores.parquet (per task, dimension and run), task_spread.parquet
(per task and dimension: mean and spread over runs), benchmark.parquet (per dimension and overall: mean and
spread over runs), then the manifest. Reports live in `{run}/benchmark/reports/{checkpoint}/reports.parquet`, the
base model's (`reports/base`) being the default reference; each is reused while its weights and config hold.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from score.checkpoints import Policy, base_policy
from score.config import BenchmarkConfig
from score.history import resolve
from score.models.base import Backend
from score.models.openai_client import ChatClient
from score.pipeline import RESEARCH_CONFIG, derive_seed
from score.progress import key_values, progress_bar
from score.prompts import parse_race_scores, race_messages, race_parts
from score.queries import Query, QueryFileError, read_rows
from score.rewards import group_std
from score.scale import digit_ids, expected_score
from score.solver import research
from score.store.layout import benchmark_dir, benchmark_reports_dir
from score.store.manifest import FolderWriter, Manifest, Outcome, behind_manifest, fingerprint
from score.store.schemas import BENCHMARK, JUDGEMENTS, REPORTS, TASK_SCORES, TASK_SPREAD, BenchmarkStats
from score.store.store import file_sha256
from score.workspace import Workspace

log = logging.getLogger(__name__)

DATA = Path(__file__).parent / "datasets"
BENCHMARKS = {"deepresearch-bench": (DATA / "drb_query.jsonl", DATA / "drb_criteria.jsonl")}
OVERALL = "overall"


class BenchmarkError(ValueError):
    """Benchmark files, a reports file or a checkpoint SCORE cannot use; the message names the problem and the fix."""


@dataclass(frozen=True)
class Criterion:
    dimension: str
    text: str
    explanation: str
    weight: float


@dataclass(frozen=True)
class Task:
    id: str
    prompt: str
    language: str
    weights: dict[str, float]  # dimension -> W_d
    criteria: tuple[Criterion, ...]


# ---- the benchmark files ---------------------------------------------------------------------------------


def load_tasks(cfg: BenchmarkConfig, files: tuple[Path, Path] | None = None) -> list[Task]:
    """The tasks of the configured benchmark (or of `files`: queries, criteria), checked line by line, in id
    order, filtered by `languages` and cut to `limit`."""
    queries_file, criteria_file = files or BENCHMARKS[cfg.name]
    queries = _jsonl(queries_file, ("id", "prompt", "language"))
    criteria = {r["id"]: (n, r) for n, r in _jsonl(criteria_file, ("id", "dimension_weight", "criterions"))}
    tasks = []
    for n, q in queries:
        if q["id"] not in criteria:
            raise BenchmarkError(
                f"{criteria_file} has no line for task {q['id']} ({queries_file}:{n}); every task needs its "
                "criteria, same id"
            )
        tasks.append(_task(q, *criteria[q["id"]], criteria_file))
    chosen = [t for t in tasks if cfg.languages == "all" or t.language == cfg.languages]
    if not chosen:
        raise BenchmarkError(f"{queries_file} has no task in language {cfg.languages!r}; set benchmark.languages: all")
    chosen.sort(key=lambda t: (len(t.id), t.id))  # numeric ids in numeric order
    return chosen[: cfg.limit] if cfg.limit else chosen


def _jsonl(path: Path, keys: tuple[str, ...]) -> list[tuple[int, dict]]:
    if not Path(path).exists():
        raise BenchmarkError(f"benchmark file {path} does not exist; reinstall the package (it ships score/datasets/)")
    rows, seen = [], set()
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise BenchmarkError(f"{path}:{n} is not a JSON object ({e.msg}); each line must be one task") from None
        missing = [k for k in keys if not isinstance(row, dict) or row.get(k) in (None, "")]
        if missing:
            raise BenchmarkError(f"{path}:{n} has no {missing[0]!r}; every line needs {', '.join(keys)}")
        row["id"] = str(row["id"])
        if row["id"] in seen:
            raise BenchmarkError(f"{path}:{n} repeats task id {row['id']}; ids must be unique")
        seen.add(row["id"])
        rows.append((n, row))
    return rows


def _task(q: dict, n: int, c: dict, path: Path) -> Task:
    where = f"{path}:{n} (task {q['id']})"
    weights, by_dim = c["dimension_weight"], c["criterions"]
    if not isinstance(weights, dict) or not isinstance(by_dim, dict):
        raise BenchmarkError(f"{where}: dimension_weight and criterions must be objects keyed by dimension")
    criteria = []
    for dim, w in weights.items():
        items = by_dim.get(dim) or []
        if w > 0 and not items:
            raise BenchmarkError(
                f"{where}: dimension {dim!r} has weight {w} but no criteria; add its criteria or set its weight to 0"
            )
        for i, item in enumerate(items):
            if (
                not isinstance(item, dict)
                or not item.get("criterion")
                or not isinstance(item.get("weight"), (int, float))
            ):
                raise BenchmarkError(
                    f"{where}: criterion {i} of {dim!r} needs a 'criterion' text and a numeric 'weight'"
                )
            if any(c.dimension == dim and c.text == item["criterion"] for c in criteria):
                raise BenchmarkError(
                    f"{where}: criterion {item['criterion']!r} appears twice in {dim!r}; criteria must differ"
                )
            criteria.append(Criterion(dim, item["criterion"], item.get("explanation", ""), float(item["weight"])))
    return Task(q["id"], q["prompt"], q["language"], {d: float(w) for d, w in weights.items()}, tuple(criteria))


# ---- RACE arithmetic ---------------------------------------------------------------------------------------


def race(task: Task, target: dict[int, float], reference: dict[int, float]) -> dict[str, tuple[float, float, float]]:
    """Per dimension and overall: (S_tgt, S_ref, S_tgt / (S_tgt + S_ref)) from the scores of criterion index ->
    0-10 score. Criterion weights are normalised over the criteria scored (an endpoint may skip some).

    >>> t = Task("1", "p", "en", {"insight": 0.5, "readability": 0.5},
    ...          (Criterion("insight", "a", "", 1.0), Criterion("readability", "b", "", 0.6),
    ...           Criterion("readability", "c", "", 0.4)))
    >>> {d: tuple(round(x, 3) for x in v) for d, v in race(t, {0: 6, 1: 5, 2: 10}, {0: 6, 1: 5, 2: 0}).items()}
    {'insight': (6.0, 6.0, 0.5), 'readability': (7.0, 3.0, 0.7), 'overall': (6.5, 4.5, 0.591)}
    """
    out, s_tgt, s_ref, w_used = {}, 0.0, 0.0, 0.0
    for dim, w_dim in task.weights.items():
        idx = [i for i, c in enumerate(task.criteria) if c.dimension == dim and i in target and i in reference]
        w = sum(task.criteria[i].weight for i in idx)
        if not idx or w <= 0:
            continue
        d_tgt = sum(task.criteria[i].weight * target[i] for i in idx) / w
        d_ref = sum(task.criteria[i].weight * reference[i] for i in idx) / w
        out[dim] = (d_tgt, d_ref, _ratio(d_tgt, d_ref))
        s_tgt, s_ref, w_used = s_tgt + w_dim * d_tgt, s_ref + w_dim * d_ref, w_used + w_dim
    if w_used > 0:
        out[OVERALL] = (s_tgt / w_used, s_ref / w_used, _ratio(s_tgt, s_ref))
    return out


def _ratio(a: float, b: float) -> float:
    return a / (a + b) if a + b > 0 else 0.5


# ---- judges ----------------------------------------------------------------------------------------------


def _criteria_texts(task: Task, explanation_chars: int) -> list[tuple[str, str]]:
    return [
        (
            c.dimension,
            c.text + (f": {c.explanation[:explanation_chars]}" if explanation_chars and c.explanation else ""),
        )
        for c in task.criteria
    ]


class LocalJudge:
    """A model through the backends: per task and article order, the 11-way score distribution of every
    criterion for both articles; each judge run draws its scores from them with its own seed."""

    def __init__(self, backend: Backend, cfg: BenchmarkConfig):
        self.backend, self.cfg = backend, cfg
        self.digits = digit_ids(backend.tokenize)

    def distributions(self, task: Task, articles: tuple[str, str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per criterion: (Article 1's distribution over 0..10, Article 2's)."""
        crit = _criteria_texts(task, self.cfg.explanation_chars)
        prefix, suffixes = race_parts(
            self.backend.render, task.prompt, tuple(a[: self.cfg.report_chars] for a in articles), crit
        )
        first, after_one = self.backend.next_token_logprobs(prefix, suffixes, self.digits, then=self.digits[1])
        dists = [expected_score(lp, lp1)[1] for lp, lp1 in zip(first, after_one)]
        return [(dists[2 * i], dists[2 * i + 1]) for i in range(len(crit))]

    def judge(
        self, tasks: list[Task], targets: dict[str, str], references: dict[str, str], seeds: list[int]
    ) -> list[dict]:
        orders = sorted({i % 2 for i in range(len(seeds))})  # run i puts the target first when i is even
        dists = {}
        with progress_bar(total=len(tasks) * len(orders), desc="judging", unit="task", leave=False) as bar:
            for t in tasks:
                for order in orders:
                    articles = (targets[t.id], references[t.id]) if order == 0 else (references[t.id], targets[t.id])
                    dists[(t.id, order)] = self.distributions(t, articles)
                    bar.update(1)
        rows = []
        for run_idx, seed in enumerate(seeds):
            rng, order = np.random.default_rng(seed), run_idx % 2
            for t in tasks:
                for c, (d1, d2) in zip(t.criteria, dists[(t.id, order)]):
                    tgt, ref = (d1, d2) if order == 0 else (d2, d1)
                    drawn = float(rng.choice(11, p=tgt)), float(rng.choice(11, p=ref))
                    expected = float(tgt @ np.arange(11)), float(ref @ np.arange(11))
                    rows.append(_judgement(t, c, (run_idx, seed, order == 0), drawn, expected))
        return rows


class EndpointJudge:
    """An OpenAI-compatible chat endpoint: one request per task and run, scores parsed from its answer."""

    def __init__(self, client: ChatClient, cfg: BenchmarkConfig):
        self.client, self.cfg = client, cfg
        self.unparsed = 0  # criterion scores missing from the answers (left out of the sums)

    def judge(
        self, tasks: list[Task], targets: dict[str, str], references: dict[str, str], seeds: list[int]
    ) -> list[dict]:
        rows, unparsed = [], 0
        with progress_bar(total=len(tasks) * len(seeds), desc="judging", unit="request", leave=False) as bar:
            for run_idx, seed in enumerate(seeds):
                for t in tasks:
                    target_first = run_idx % 2 == 0
                    pair = (targets[t.id], references[t.id]) if target_first else (references[t.id], targets[t.id])
                    messages = race_messages(
                        t.prompt,
                        tuple(a[: self.cfg.report_chars] for a in pair),
                        _criteria_texts(t, self.cfg.explanation_chars),
                    )
                    [answer] = self.client.chat(
                        messages,
                        temperature=self.cfg.judge.temperature,
                        max_tokens=12 * len(t.criteria) + 32,
                        seed=seed,
                    )
                    scores = parse_race_scores(answer, len(t.criteria))
                    unparsed += len(t.criteria) - len(scores)
                    for i, c in enumerate(t.criteria):
                        if i in scores:
                            a1, a2 = scores[i]
                            tgt, ref = (a1, a2) if target_first else (a2, a1)
                            rows.append(_judgement(t, c, (run_idx, seed, target_first), (float(tgt), float(ref))))
                    bar.update(1)
        if unparsed:
            log.warning(
                "endpoint judge: %d criterion scores could not be read from its answers; those criteria are left out",
                unparsed,
            )
        self.unparsed = unparsed
        return rows


def _judgement(
    t: Task,
    c: Criterion,
    run: tuple[int, int, bool],
    scores: tuple[float, float],
    expected: tuple[float | None, float | None] = (None, None),
) -> dict:
    """A row of judgements.parquet: one criterion of one task in one run (index, seed, target shown first), the
    target's and the reference's scores, and their expectations where the judge gives probabilities."""
    (run_idx, seed, target_first), (tgt, ref), (tgt_exp, ref_exp) = run, scores, expected
    return {
        "task_id": t.id,
        "run_idx": run_idx,
        "seed": seed,
        "target_first": target_first,
        "dimension": c.dimension,
        "criterion": c.text,
        "weight": c.weight,
        "target": tgt,
        "reference": ref,
        "target_expected": tgt_exp,
        "reference_expected": ref_exp,
    }


def make_judge(ws: Workspace, cfg: BenchmarkConfig):
    """The configured judge, checked before any report is written (an endpoint that is down fails here)."""
    j = cfg.judge
    if j.kind == "endpoint":
        client = ChatClient.of(j.endpoint)
        client.chat(
            [race_messages("ping", ("a", "b"), [("readability", "clear")])[0]], max_tokens=1
        )  # raises EndpointError, naming the URL
        return EndpointJudge(client, cfg), f"endpoint:{j.endpoint.base_url}#{j.endpoint.model}"
    if j.kind == "model":
        from score.models import load_backend

        return LocalJudge(load_backend(j.model), cfg), f"model:{j.model.path}"
    return LocalJudge(ws.backend(base_policy(ws.cfg.model)), cfg), f"base:{ws.cfg.model.path}"


# ---- checkpoints and reports -----------------------------------------------------------------------------


def read_reference(path: str, tasks: list[Task], name: str = "deepresearch-bench") -> dict[str, str]:
    """task id -> report from a Parquet/JSONL/CSV file with columns id and report; it must cover every task."""
    if not Path(path).is_file():
        raise BenchmarkError(
            f"reports file {path} (benchmark.reference) does not exist; set it to 'base' or to a file with id "
            "and report columns"
        )
    try:
        rows = read_rows(Path(path))
    except QueryFileError as e:
        raise BenchmarkError(str(e).replace("queries file", "reports file")) from None
    missing_cols = [c for c in ("id", "report") if c not in rows.columns]
    if missing_cols:
        raise BenchmarkError(
            f"reports file {path} has no column {missing_cols[0]!r} (columns: {list(rows.columns)}); it needs "
            "id (the task id) and report"
        )
    reports = {str(i): str(r) for i, r in zip(rows["id"], rows["report"])}
    wanted = {t.id for t in tasks}
    absent = sorted(wanted - set(reports), key=lambda x: (len(x), x))
    unknown = sorted(set(reports) - {r["id"] for _, r in _jsonl(BENCHMARKS[name][0], ("id",))})
    if unknown:
        raise BenchmarkError(
            f"reports file {path} has ids that are not benchmark tasks: {unknown[:5]}; ids are the task ids (1-100)"
        )
    if absent:
        raise BenchmarkError(
            f"reports file {path} has no report for task(s) {absent[:5]}{' ...' if len(absent) > 5 else ''}; "
            "it must cover every task evaluated"
        )
    return {t.id: reports[t.id] for t in tasks}


REPORT_CONFIG = RESEARCH_CONFIG  # what a benchmark report depends on: tasks replace queries


def _reports(ws: Workspace, tasks: list[Task], policy: Policy, label: str) -> dict[str, str]:
    """task id -> the policy's report (one each, the generate config's loop and budget), kept behind a manifest
    in the benchmark's reports folder: a rerun with the same weights, tasks and config reads them back."""
    queries = [Query(t.id, t.prompt) for t in tasks]
    meta = Manifest(
        stage="benchmark-reports",
        run=ws.cfg.run,
        label=label,
        files={},
        fingerprint=fingerprint(
            {
                "policy": policy.fingerprint,
                "tasks": [t.id for t in tasks],
                "config": ws.cfg.section_fingerprint(*REPORT_CONFIG),
                "corpus": ws.search.fingerprint,
            }
        ),
    )

    def work(writer: FolderWriter):
        rows, stats = research(ws, queries, policy, derive_seed(ws.cfg.seed, 0, "benchmark"), samples=1)
        writer.rows(REPORTS.file, rows)
        return stats

    folder = benchmark_reports_dir(ws.cfg.run, label)
    behind_manifest(ws.store, folder, meta, work)
    return {r["query_id"]: r["report"] for r in ws.store.read_table(folder, REPORTS.file).to_pylist()}


# ---- the evaluation --------------------------------------------------------------------------------------


def check_inputs(ws: Workspace, checkpoint: str) -> tuple[list[Task], str, Policy, dict[str, str] | None]:
    """The tasks, the checkpoint's label and policy, and the reference reports when they come from a file:
    everything `evaluate` needs from its input, checked without loading a model."""
    cfg = ws.cfg.benchmark
    tasks = load_tasks(cfg)
    label, policy = resolve(ws, checkpoint)
    return tasks, label, policy, read_reference(cfg.reference, tasks, cfg.name) if cfg.reference != "base" else None


def evaluate(ws: Workspace, checkpoint: str = "latest", force: bool = False) -> Outcome:
    """Write the checkpoint's benchmark scores into the run's benchmark folder for its label (skipped when its
    manifest matches). Everything is checked (benchmark files, reference file, judge endpoint) before any report
    is written, and the output files are written only after every judge run finished."""
    cfg = ws.cfg.benchmark
    tasks, label, policy, reference_file = check_inputs(ws, checkpoint)
    meta = Manifest(
        stage="benchmark",
        run=ws.cfg.run,
        label=label,
        files={},
        fingerprint=fingerprint(
            {
                "policy": policy.fingerprint,
                "benchmark": ws.cfg.section_fingerprint("benchmark"),
                "reference": file_sha256(Path(cfg.reference)) if reference_file else "base",
                "config": ws.cfg.section_fingerprint(*REPORT_CONFIG),
                "corpus": ws.search.fingerprint,
                "files": [file_sha256(p) for p in BENCHMARKS[cfg.name]],
            }
        ),
    )
    outcome = behind_manifest(  # cleared at the first write: a failure before it keeps the last evaluation
        ws.store,
        benchmark_dir(ws.cfg.run, label),
        meta,
        lambda w: _judge_and_write(ws, w, tasks, policy, label, reference_file),
        force=force,
    )
    log.info("benchmark %s of %s: %s", cfg.name, label, key_values(outcome.manifest.stats))
    return outcome


def _judge_and_write(
    ws: Workspace,
    writer: FolderWriter,
    tasks: list[Task],
    policy: Policy,
    label: str,
    reference_file: dict[str, str] | None,
) -> BenchmarkStats:
    cfg = ws.cfg.benchmark
    judge, judge_name = make_judge(ws, cfg)  # before any report: an endpoint that is down fails here
    t0 = time.perf_counter()
    references = reference_file or _reports(ws, tasks, base_policy(ws.cfg.model), "base")
    targets = _reports(ws, tasks, policy, label)
    t_gen = time.perf_counter() - t0
    judgements = judge.judge(tasks, targets, references, cfg.judge.seeds)
    t_judge = time.perf_counter() - t0 - t_gen
    if not judgements:
        raise BenchmarkError(
            f"the judge ({judge_name}) answered no score in the form '<criterion>: <score 1> <score 2>' on any task; "
            f"nothing was written: use a judge that follows the format (benchmark.judge)"
        )
    task_rows = _task_rows(tasks, judgements, len(cfg.judge.seeds))
    per_task, summary = _spreads(task_rows, len(tasks))
    for artifact, rows in [
        (JUDGEMENTS, judgements),
        (TASK_SCORES, task_rows),
        (TASK_SPREAD, per_task),
        (BENCHMARK, summary),
    ]:
        writer.rows(artifact.file, rows)
    overall = next(s for s in summary if s["dimension"] == OVERALL)
    return BenchmarkStats(
        benchmark=cfg.name,
        checkpoint=policy.name,
        judge=judge_name,
        reference=cfg.reference,
        tasks=len(tasks),
        judge_runs=len(cfg.judge.seeds),
        score=round(overall["mean"], 4),
        score_std=round(overall["std"], 4),
        dimensions={s["dimension"]: round(s["mean"], 4) for s in summary if s["dimension"] != OVERALL},
        unparsed_scores=getattr(judge, "unparsed", 0),
        seconds_reports=round(t_gen, 1),
        seconds_judge=round(t_judge, 1),
    )


def _task_rows(tasks: list[Task], judgements: list[dict], runs: int) -> list[dict]:
    by = {}
    for j in judgements:
        by.setdefault((j["task_id"], j["run_idx"]), []).append(j)
    rows = []
    for t in tasks:
        index = {(c.dimension, c.text): i for i, c in enumerate(t.criteria)}
        for run_idx in range(runs):
            js = [(index[(j["dimension"], j["criterion"])], j) for j in by.get((t.id, run_idx), [])]
            got = race(t, {i: j["target"] for i, j in js}, {i: j["reference"] for i, j in js})
            rows += [
                {"task_id": t.id, "run_idx": run_idx, "dimension": d, "target": a, "reference": b, "score": s}
                for d, (a, b, s) in got.items()
            ]
    return rows


def _spreads(task_rows: list[dict], n_tasks: int) -> tuple[list[dict], list[dict]]:
    """Per task and dimension, and per dimension over the benchmark (the mean over tasks of each run): the
    mean over judge runs, their standard deviation (population), min and max."""
    cells: dict[tuple[str, str], list[float]] = {}
    runs: dict[tuple[str, int], list[float]] = {}
    for r in task_rows:
        cells.setdefault((r["task_id"], r["dimension"]), []).append(r["score"])
        runs.setdefault((r["dimension"], r["run_idx"]), []).append(r["score"])
    per_task = [{"task_id": t, "dimension": d, **_spread(v)} for (t, d), v in cells.items()]
    dims: dict[str, list[float]] = {}
    for (d, _), v in sorted(runs.items()):
        dims.setdefault(d, []).append(sum(v) / len(v))
    summary = [{"dimension": d, **_spread(v), "tasks": n_tasks} for d, v in dims.items()]
    return per_task, sorted(summary, key=lambda s: (s["dimension"] != OVERALL, s["dimension"]))


def _spread(values: list[float]) -> dict:
    return {
        "mean": sum(values) / len(values),
        "std": group_std(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }
