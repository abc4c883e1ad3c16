"""Gold measures: research judged against known answers, beside (never inside) the in-loop reward.

A query with gold (score/queries.py: gold passage ids, a gold answer) lets a report be checked without any judge:

    found recall    share of the gold passages among the sources the trajectory met (did it research?)
    gold recall     share of the gold passages among the sources its report cites
    gold precision  share of its cited sources that are gold passages
    answer correct  the report states the gold answer (a whole word: "1948", not "19480")
    gold score      mean of gold recall and answer correct (those the query has): what the hacking gap compares with

The generate-reports stage writes them for the round's training reports (gold.parquet, and its statistics); no
stage that computes a reward declares gold.parquet, so the runner refuses to let one read it. `score inspect`
puts them beside the solver's reward: the hacking gap is the in-loop reward minus the gold score, same reports.

Every checkpoint is also measured on held-out queries (`evaluate_heldout`: data.heldout queries, never trained on,
data.heldout_samples trajectories each with the same sampling seeds at every checkpoint, so checkpoints are
paired), in `{run}/heldout/{label}/`: reports.parquet, gold.parquet, the manifest holding `HeldoutStats`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from score.pipeline import GENERATE, RESEARCH_CONFIG, derive_seed
from score.progress import key_values
from score.queries import Query

log = logging.getLogger(__name__)

MEASURES = ("found_recall", "gold_recall", "gold_precision", "answer_correct", "gold_score")


def answer_correct(report: str, answer: str | None) -> bool | None:
    """The report states the answer as a whole word (case-insensitive); None without an answer.

    >>> answer_correct("It was renamed in 1948 [2].", "1948"), answer_correct("In 19480.", "1948")
    (True, False)
    >>> answer_correct("anything", None) is None
    True
    """
    if not answer:
        return None
    return re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", report or "", re.IGNORECASE) is not None


def recall(ids: Sequence[str], gold: Sequence[str]) -> float | None:
    """Share of the gold ids among `ids`; None without gold.

    >>> recall(["a", "c"], ["a", "b"]), recall(["a"], [])
    (0.5, None)
    """
    return sum(g in set(ids) for g in gold) / len(gold) if gold else None


def precision(ids: Sequence[str], gold: Sequence[str]) -> float | None:
    """Share of `ids` that are gold; None when `ids` is empty or there is no gold.

    >>> precision(["a", "c"], ["a", "b"]), precision([], ["a"])
    (0.5, None)
    """
    return sum(i in set(gold) for i in ids) / len(ids) if ids and gold else None


def gold_score(gold_recall: float | None, correct: bool | None) -> float | None:
    """Mean of gold recall and answer correctness, of those that exist.

    >>> gold_score(0.5, True), gold_score(1.0, None), gold_score(None, None)
    (0.75, 1.0, None)
    """
    parts = [x for x in (gold_recall, None if correct is None else float(correct)) if x is not None]
    return sum(parts) / len(parts) if parts else None


def measure(row: dict, query: Query) -> dict:
    """A row of gold.parquet for one trajectory (a reports.parquet row) of `query`."""
    sources = row.get("sources") or []
    cited = set(row.get("cited") or [])
    cited_ids = [s["passage_id"] for s in sources if s["n"] in cited]
    g_recall = recall(cited_ids, query.gold_ids)
    correct = answer_correct(row.get("report") or "", query.gold_answer)
    return {
        "query_id": row["query_id"],
        "trajectory_id": row["trajectory_id"],
        "sample_idx": row.get("sample_idx"),
        "tool_calls": row.get("tool_calls"),
        "found_recall": recall([s["passage_id"] for s in sources], query.gold_ids),
        "gold_recall": g_recall,
        "gold_precision": precision(cited_ids, query.gold_ids),
        "answer_correct": correct,
        "gold_score": gold_score(g_recall, correct),
    }


def measure_rows(rows: list[dict], queries: Sequence[Query]) -> list[dict]:
    """gold.parquet's rows for reports of `queries`; none when no query has gold."""
    by_id = {q.id: q for q in queries}
    if not any(q.gold_ids or q.gold_answer for q in queries):
        return []
    return [measure(r, by_id[r["query_id"]]) for r in rows]


def means(gold_rows: list[dict]) -> dict[str, float | None]:
    """Each measure's mean over the rows that have it (answer_correct: the accuracy), rounded; None: none has it.

    >>> means([{"gold_recall": 1.0, "answer_correct": True}, {"gold_recall": 0.0, "answer_correct": None}])
    {'found_recall': None, 'gold_recall': 0.5, 'gold_precision': None, 'answer_correct': 1.0, 'gold_score': None}
    """
    out = {}
    for m in MEASURES:
        xs = [float(r[m]) for r in gold_rows if r.get(m) is not None]
        out[m] = round(sum(xs) / len(xs), 4) if xs else None
    return out


def hacking_gap(rewards: dict[str, float], gold_rows: list[dict]) -> dict[str, float | int | None]:
    """The in-loop reward minus the gold score, on the same reports (trajectory id -> solver reward; gold.parquet
    rows): what a judge pays for beyond what is known to be right. Beside it, the mean reward of the reports citing
    every gold passage and of the others: does research that reads both passages earn more? None: no such report.

    >>> g = [{"trajectory_id": "a", "gold_score": 1.0, "gold_recall": 1.0}, {"trajectory_id": "b", "gold_score": 0.0,
    ...       "gold_recall": 0.0}]
    >>> hacking_gap({"a": 0.8, "b": 0.2}, g)
    {'reports': 2, 'reward_mean': 0.5, 'gold_mean': 0.5, 'gap': 0.0, 'reward_all_gold_cited': 0.8, 'reward_others': 0.2}
    """
    rows = [g for g in gold_rows if g.get("gold_score") is not None and g["trajectory_id"] in rewards]
    if not rows:
        return {"reports": 0, "reward_mean": None, "gold_mean": None, "gap": None}
    r = _mean([rewards[g["trajectory_id"]] for g in rows])
    gold = _mean([g["gold_score"] for g in rows])
    full = [rewards[g["trajectory_id"]] for g in rows if g.get("gold_recall") == 1.0]
    rest = [rewards[g["trajectory_id"]] for g in rows if g.get("gold_recall") != 1.0]
    return {
        "reports": len(rows),
        "reward_mean": r,
        "gold_mean": gold,
        "gap": round(r - gold, 4),
        "reward_all_gold_cited": _mean(full),
        "reward_others": _mean(rest),
    }


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


@dataclass
class HeldoutStats:
    """What a held-out folder's manifest holds: the checkpoint's gold measures on the held-out queries."""

    checkpoint: str = ""
    queries: int = 0
    reports: int = 0
    answer_queries: int = 0  # held-out queries with a gold answer
    answer_accuracy: float | None = None
    gold_recall: float | None = None
    found_recall: float | None = None
    gold_precision: float | None = None
    gold_score: float | None = None
    multi_call_share: float = 0.0
    mean_tool_calls: float = 0.0
    citing_share: float = 0.0
    seconds: float = 0.0


def heldout_stats(label: str, queries: list[Query], rows: list[dict], gold_rows: list[dict], s: float) -> HeldoutStats:
    m = means(gold_rows)
    n = max(len(rows), 1)
    return HeldoutStats(
        checkpoint=label,
        queries=len(queries),
        reports=len(rows),
        answer_queries=sum(q.gold_answer is not None for q in queries),
        answer_accuracy=m["answer_correct"],
        gold_recall=m["gold_recall"],
        found_recall=m["found_recall"],
        gold_precision=m["gold_precision"],
        gold_score=m["gold_score"],
        multi_call_share=round(sum((r.get("tool_calls") or 0) >= 2 for r in rows) / n, 4),
        mean_tool_calls=round(sum(r.get("tool_calls") or 0 for r in rows) / n, 3),
        citing_share=round(sum(bool(r.get("cited")) for r in rows) / n, 4),
        seconds=round(s, 1),
    )


def round_gold(store, run: str, round_idx: int) -> list[dict]:
    """What `score inspect` shows of a round's gold: its training reports (with the hacking gap once self-evaluate
    is done) and, where measured, the held-out queries under the base weights (round 0) and the round's checkpoint.
    Empty when the round's queries have no gold."""
    from score.pipeline import EVALUATE
    from score.store.layout import heldout_dir, round_label, stage_dir
    from score.store.schemas import GOLD, REPORTS, SOLVER_REWARDS

    folder = stage_dir(run, round_idx, GENERATE.folder)
    if store.read_manifest(folder) is None or GOLD.file not in store.read_manifest(folder).files:
        return []
    gold = store.read_table(folder, GOLD.file).to_pylist()
    if not gold:
        return []
    out = [{"what": "training reports", **_row(gold, store.read_table(folder, REPORTS.file).to_pylist())}]
    evaluate = stage_dir(run, round_idx, EVALUATE.folder)
    if store.read_manifest(evaluate) is not None:
        rewards = {r["trajectory_id"]: r["reward"] for r in store.read_table(evaluate, SOLVER_REWARDS.file).to_pylist()}
        out[0].update(hacking_gap(rewards, gold))
    for label in (["base"] if round_idx == 0 else []) + [round_label(round_idx)]:
        if store.read_manifest(heldout_dir(run, label)) is not None:
            h = heldout_dir(run, label)
            rows = store.read_table(h, REPORTS.file).to_pylist()
            out.append({"what": f"held-out, {label}", **_row(store.read_table(h, GOLD.file).to_pylist(), rows)})
    return out


def _row(gold_rows: list[dict], reports: list[dict]) -> dict:
    m, n = means(gold_rows), max(len(reports), 1)
    calls = sum((r.get("tool_calls") or 0) >= 2 for r in reports) / n
    return {"reports": len(reports), "multi_call_share": round(calls, 4), **m}


REPORT_CONFIG = RESEARCH_CONFIG + ("data.heldout", "data.heldout_samples")


def evaluate_heldout(ws, checkpoint: str = "latest", force: bool = False):
    """Research the held-out queries with the checkpoint's weights and measure the reports against their gold,
    behind a manifest in `{run}/heldout/{label}/` (skipped when it matches). Returns the Outcome."""
    from score.history import resolve
    from score.solver import research
    from score.store.layout import heldout_dir
    from score.store.manifest import Manifest, behind_manifest, fingerprint
    from score.store.schemas import GOLD, REPORTS

    queries = ws.heldout_queries
    if not queries:
        raise ValueError(
            f"{ws.cfg.data.queries} has no held-out queries (a split column with heldout rows) or data.heldout is 0; "
            "use data.queries: wiki, or add held-out rows"
        )
    label, policy = resolve(ws, checkpoint)
    meta = Manifest(
        stage="heldout",
        run=ws.cfg.run,
        label=label,
        files={},
        fingerprint=fingerprint(
            {
                "policy": policy.fingerprint,
                "queries": [asdict(q) for q in queries],
                "config": ws.cfg.section_fingerprint(*REPORT_CONFIG),
                "corpus": ws.search.fingerprint,
            }
        ),
    )

    def work(writer):
        t0 = time.perf_counter()
        seed = derive_seed(ws.cfg.seed, 0, "heldout")  # the same at every checkpoint: paired samples
        rows, _ = research(ws, queries, policy, seed, samples=ws.cfg.data.heldout_samples, label=f"held-out {label}")
        gold_rows = measure_rows(rows, queries)
        writer.rows(REPORTS.file, rows)
        writer.rows(GOLD.file, gold_rows)
        return heldout_stats(label, queries, rows, gold_rows, time.perf_counter() - t0)

    outcome = behind_manifest(ws.store, heldout_dir(ws.cfg.run, label), meta, work, force=force)
    log.info("held-out gold of %s: %s", label, key_values(outcome.manifest.stats))
    return outcome
