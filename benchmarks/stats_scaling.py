"""How the evaluation statistics and the artifact reader grow with rows: 1k, 10k and 100k synthetic score rows.

For each size, in a fresh process (so peak memory is that size's own): write `scores.parquet` through the
Store, read it back (strict schema check, then to Python rows as self-evaluate holds them), compute the
round's rewards and dimension statistics (`score.stages.evaluate._rewards`, what harness-evolve reads),
and run harness-evolve's rules on them. Prints seconds and peak RSS above the process's baseline (the
peak includes building the synthetic rows as Python dicts, as self-evaluate builds its own).
Shape: queries x K=4 reports x J=2 rubrics x 2 passes x 5 dimensions (80 rows per query), a quarter of
the reports with one corrupted copy. No model is involved.
Run: `python benchmarks/stats_scaling.py [--sizes 1000 10000 100000]`.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time


def one_size(n_rows: int) -> dict:
    import pyarrow as pa

    from score.artifacts import SCORES_SCHEMA, Store
    from score.config import RunConfig, StoreConfig
    from score.harness import DimensionStats, RoundStats, evolve, seed_harness
    from score.rubrics import Rubric
    from score.stages.evaluate import _rewards

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cfg = RunConfig()
    harness = seed_harness(cfg.harness)
    dims = [d.id for d in harness.active]
    K, J, rng = 4, 2, random.Random(0)
    per_query = K * J * 2 * len(dims) * 1.25  # originals plus a quarter probed
    n_queries = max(1, round(n_rows / per_query))
    by_query, rubrics, rows = {}, {}, []
    for q in range(n_queries):
        qid = f"q{q:06d}"
        by_query[qid] = [
            {"trajectory_id": f"{qid}-{k}", "sample_idx": k, "report": "x" * 200, "finish_reason": "stop", "cited": [1]} for k in range(K)
        ]
        rubrics[qid] = [Rubric({d: 1 / len(dims) for d in dims}, {d: [f"{d} criterion"] for d in dims}, None, "ok") for _ in range(J)]
        items = [(r["trajectory_id"], "") for r in by_query[qid]] + [(f"{qid}-0", "drop_section")]
        for tid, kind in items:
            for j in range(J):
                for p in (0, 1):
                    for d in dims:
                        s = rng.uniform(3, 9)
                        rows.append({"round": 0, "query_id": qid, "rubric_idx": j, "pass_idx": p, "trajectory_id": tid, "probe_kind": kind,
                                     "position": 1, "dimension": d, "criterion": f"{d} criterion", "shadow": False, "expected": s,
                                     "sampled": int(s), "sampled_logprob": -1.0, "score": s, "score_path": "expected"})
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(StoreConfig(root=tmp))
        t0 = time.perf_counter()
        info = store.write_table("r/evaluate", "scores.parquet", pa.Table.from_pylist(rows, schema=SCORES_SCHEMA))
        store.write_manifest("r/evaluate", {"files": {"scores.parquet": vars(info)}})
        t_write = time.perf_counter() - t0
        del rows
        t0 = time.perf_counter()
        score_rows = store.read_table("r/evaluate", "scores.parquet").to_pylist()
        t_read = time.perf_counter() - t0

    class _WS:  # _rewards reads only the config from its workspace
        pass

    ws = _WS()
    ws.cfg = cfg
    t0 = time.perf_counter()
    _, _, summary, dim_rows = _rewards(ws, 0, by_query, rubrics, score_rows, [], harness)
    t_stats = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats = {r["dimension"]: DimensionStats(r["dimension"], r["mean"], r["spread"], r["detection"], r["probes"], r["max_corr"], r["max_corr_with"]) for r in dim_rows}
    evolve(harness, stats, RoundStats(top_share=summary["top_share"], depth_change=0.0, proposals=()), cfg.harness.rules, 0, "rules")
    t_evolve = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss
    return {"rows": len(score_rows), "queries": n_queries, "parquet_bytes": info.bytes, "write_s": t_write, "read_s": t_read,
            "stats_s": t_stats, "evolve_s": t_evolve, "peak_rss_mib": peak / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process: one size, JSON out
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one)))
        return
    results = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'rows':>8} {'parquet':>9} {'write s':>8} {'read s':>7} {'stats s':>8} {'evolve s':>9} {'peak RSS MiB':>13}")
    for r in results:
        print(f"{r['rows']:>8,} {r['parquet_bytes'] / 1e6:>8.2f}M {r['write_s']:>8.2f} {r['read_s']:>7.2f} {r['stats_s']:>8.2f} "
              f"{r['evolve_s']:>9.4f} {r['peak_rss_mib']:>13.0f}")
    a, b = results[0], results[-1]
    print(f"{b['rows'] / a['rows']:.0f}x the rows: stats {b['stats_s'] / max(a['stats_s'], 1e-9):.0f}x the time, "
          f"read {b['read_s'] / max(a['read_s'], 1e-9):.0f}x, peak memory {b['peak_rss_mib'] / max(a['peak_rss_mib'], 1e-9):.0f}x "
          f"(everything is held in Python rows: memory grows with the rows, it does not stream)")


if __name__ == "__main__":
    main()
