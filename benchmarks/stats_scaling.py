"""How the evaluation statistics and the artifact reader grow with rows: 1k, 10k and 100k synthetic score rows.

For each size a first process writes a synthetic `scores.parquet` through the Store, the way self-evaluate
writes it (`Store.write_table`, one file behind a manifest; the rows built as Arrow batches, a few queries at a
time, never as Python dicts). Then, per size and per reader, a fresh process (so peak memory is that run's own)
computes the round's rewards, dimension statistics and summary (`round_statistics`, what harness-evolve reads)
and runs harness-evolve's rules on them; it prints seconds, the RSS the round's report rows take (input the
stage holds whatever the reader; they grow with reports) and the peak RSS above that:

- stream: `stream_scores`, the product path: `Store.iter_batches` over the 7 columns the statistics read, one
  query's rows at a time;
- load:   `Store.read_table` then `to_pylist`, every row as a dict (how the statistics ran before streaming),
  into the same `round_statistics`.

Both keep what crosses queries (per-report rewards, per-dimension means for the correlations): that part grows
with reports, the streamed score rows do not.
Shape: queries x K=4 reports x J=2 rubrics x 2 passes x 5 dimensions, plus one corrupted copy of one report per
query (100 rows per query). No model is involved.
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

K, J, PER_QUERY = 4, 2, 100  # reports and rubrics per query; score rows per query (5 items x J x 2 passes x 5 dims)
FOLDER = "r/evaluate"


def synthetic_round(n_rows: int):
    """The round's light report rows, rubrics and harness (what self-evaluate holds besides its scores)."""
    from score.config import RunConfig
    from score.harness import seed_harness
    from score.rubrics import Rubric

    cfg = RunConfig()
    harness = seed_harness(cfg.harness)
    dims = [d.id for d in harness.active]
    assert len(dims) == 5, "the synthetic shape assumes the seed harness's 5 active dimensions"
    by_query, rubrics = {}, {}
    for q in range(max(1, round(n_rows / PER_QUERY))):
        qid = f"q{q:06d}"
        by_query[qid] = [
            {"trajectory_id": f"{qid}-{k}", "sample_idx": k, "report": "x" * 200, "finish_reason": "stop", "cited": [1]}
            for k in range(K)
        ]
        rubrics[qid] = [
            Rubric({d: 1 / len(dims) for d in dims}, {d: [f"{d} criterion"] for d in dims}, None, "ok")
            for _ in range(J)
        ]
    return cfg, harness, by_query, rubrics


def write_scores(root: str, n_rows: int) -> dict:
    """scores.parquet for `n_rows`, built as Arrow batches of 100 queries and written by the product's writer."""
    import pyarrow as pa

    from score.config import StoreConfig
    from score.store.schemas import SCORES_SCHEMA
    from score.store.store import Store

    _, _, by_query, rubrics = synthetic_round(n_rows)
    rng, batches, cols = random.Random(0), [], {name: [] for name in SCORES_SCHEMA.names}
    for i, (qid, group) in enumerate(by_query.items()):
        items = [(r["trajectory_id"], "") for r in group] + [(f"{qid}-0", "drop_section")]
        for tid, kind in items:
            for j, rub in enumerate(rubrics[qid]):
                for p in (0, 1):
                    for d in rub.weights:
                        s = rng.uniform(3, 9)
                        for name, v in zip(
                            SCORES_SCHEMA.names,
                            (0, qid, j, p, tid, kind, 1, d, f"{d} criterion", False, s, int(s), -1.0, s, "expected"),
                        ):
                            cols[name].append(v)
        if (i + 1) % 100 == 0 or i + 1 == len(by_query):
            batches.append(pa.RecordBatch.from_pydict(cols, schema=SCORES_SCHEMA))
            cols = {name: [] for name in SCORES_SCHEMA.names}
    store = Store(StoreConfig(root=root))
    t0 = time.perf_counter()
    info = store.write_table(FOLDER, "scores.parquet", pa.Table.from_batches(batches, schema=SCORES_SCHEMA))
    store.write_manifest(FOLDER, {"files": {"scores.parquet": vars(info)}})
    return {
        "rows": info.rows,
        "queries": len(by_query),
        "parquet_bytes": info.bytes,
        "write_s": time.perf_counter() - t0,
    }


def measure(root: str, n_rows: int, reader: str) -> dict:
    """Statistics and harness rules from the written file, by `reader` (stream | load); seconds and peak RSS."""
    from score.config import StoreConfig
    from score.evaluator import Judged
    from score.evaluator.statistics import groups_from_rows, round_statistics, stream_scores
    from score.harness import evolve
    from score.stages.evolve import dimension_stats, round_stats
    from score.store.store import Store

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    cfg, harness, by_query, rubrics = synthetic_round(n_rows)  # the stage holds its reports whatever the reader
    inputs_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store = Store(StoreConfig(root=root))
    t0 = time.perf_counter()
    if reader == "stream":
        groups = stream_scores(store, FOLDER)  # read, grouped and reduced in the one pass below
    else:
        groups = groups_from_rows(store.read_table(FOLDER, "scores.parquet").to_pylist())
    t_read = time.perf_counter() - t0
    stats = round_statistics(cfg, 0, Judged(by_query, rubrics, [], [], [], [], [], []), groups, harness)
    t_stats = time.perf_counter() - t0 - t_read
    t0 = time.perf_counter()
    dims = {r["dimension"]: dimension_stats(r) for r in stats.dimension_rows}
    evolve(harness, dims, round_stats(stats.summary, (), None), cfg.harness.rules, 0, "rules")
    t_evolve = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - inputs_rss
    return {
        "reports": stats.summary["reports"],
        "read_s": t_read,
        "stats_s": t_stats,
        "evolve_s": t_evolve,
        "peak_rss_mib": peak / 1024,
        "inputs_rss_mib": (inputs_rss - base_rss) / 1024,
        "reward_mean": stats.summary["reward_mean"],
    }


def child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--write", nargs=2, metavar=("ROOT", "ROWS"), help=argparse.SUPPRESS)  # child: write one file
    parser.add_argument(
        "--measure", nargs=3, metavar=("ROOT", "ROWS", "READER"), help=argparse.SUPPRESS
    )  # child: one run
    args = parser.parse_args()
    if args.write:
        print(json.dumps(write_scores(args.write[0], int(args.write[1]))))
        return
    if args.measure:
        print(json.dumps(measure(args.measure[0], int(args.measure[1]), args.measure[2])))
        return
    results = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as root:
            written = child("--write", root, str(n))
            runs = {reader: child("--measure", root, str(n), reader) for reader in ("stream", "load")}
        assert runs["stream"]["reward_mean"] == runs["load"]["reward_mean"], (
            "both readers must give the same statistics"
        )
        results.append({**written, **{f"{reader}_{k}": v for reader, r in runs.items() for k, v in r.items()}})
    print(
        f"{'rows':>8} {'reports':>8} {'reports MiB':>11} {'parquet':>8} {'write s':>8} | "
        f"{'stream: read+stats s':>20} {'evolve s':>9} "
        f"{'peak MiB':>9} | {'load: read s':>12} {'stats s':>8} {'peak MiB':>9}"
    )
    for r in results:
        print(
            f"{r['rows']:>8,} {r['stream_reports']:>8,} {r['stream_inputs_rss_mib']:>11.1f} "
            f"{r['parquet_bytes'] / 1e6:>7.2f}M {r['write_s']:>8.2f} | "
            f"{r['stream_stats_s']:>20.2f} {r['stream_evolve_s']:>9.4f} {r['stream_peak_rss_mib']:>9.1f} | "
            f"{r['load_read_s']:>12.2f} {r['load_stats_s']:>8.2f} {r['load_peak_rss_mib']:>9.1f}"
        )
    a, b = results[0], results[-1]

    def ratio(key: str) -> float:
        return b[key] / max(a[key], 1e-9)

    print(
        f"{b['rows'] / a['rows']:.0f}x the rows: streaming {ratio('stream_stats_s'):.0f}x the time, peak memory "
        f"{ratio('stream_peak_rss_mib'):.1f}x ({a['stream_peak_rss_mib']:.1f} -> "
        f"{b['stream_peak_rss_mib']:.1f} MiB); loading everything "
        f"{ratio('load_peak_rss_mib'):.1f}x ({a['load_peak_rss_mib']:.1f} -> {b['load_peak_rss_mib']:.1f} MiB)"
    )


if __name__ == "__main__":
    main()
