"""Bad input, probed as a careless user would: each case runs the `score` CLI in a fresh process and is classed by
what came back. clear: exit 2 and one line starting "error:" that names the problem; unclear: any other failure
without a traceback; traceback: a Python traceback; accepted: exit 0, or still working after `--timeout` seconds
(killed); damaged: the finished round in the store changed (checked after every case, whatever its class). Goal:
every case clear, none damaged.

Every case points at a temporary store (never the checkout's) that holds round 0 of configs/ci.yaml, finished
first (about 2 minutes): a case that reruns a stage with a config refused late must leave it as it was.

Run: `python benchmarks/bad_inputs.py [--timeout 60]`; prints the table (markdown) and the counts, and writes them
as a record (benchmarks/records/, rendered into docs/measurements.md).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from common import write_record

ROOT = Path(__file__).resolve().parents[1]


def _files(tmp: Path) -> dict[str, str]:
    """The bad files the cases point at, made in `tmp`."""
    good = {"id": ["a", "b"], "title": ["A", "B"], "text": ["x", "y"], "source": ["u", "v"]}
    pq.write_table(pa.table({"id": ["a"], "text": ["x"]}), tmp / "wrong_columns.parquet")
    pq.write_table(pa.table({k: pa.array([], pa.string()) for k in good}), tmp / "no_rows.parquet")
    pq.write_table(pa.table({**good, "id": ["a", "a"]}), tmp / "dupe_ids.parquet")
    (tmp / "text.parquet").write_text("id,title,text,source\n")
    (tmp / "binary.yaml").write_bytes(bytes(range(256)))
    (tmp / "binary.csv").write_bytes(b"query\n\xff\xfe\x00bad\n")
    (tmp / "empty.yaml").write_text("# nothing\n")
    (tmp / "twice.yaml").write_text("run: ci\ntrain:\n  lr: 0.1\ntrain:\n  epochs: 2\n")
    (tmp / "bad.jsonl").write_text('{"query": "fine"}\n{"query": "two",}\n')
    (tmp / "afile").write_text("a file, not a folder\n")
    (tmp / "ckpt").mkdir()
    (tmp / "ckpt" / "adapter_config.json").write_text("{not json")
    (tmp / "ckpt_empty").mkdir()
    (tmp / "ckpt_empty" / "adapter_config.json").write_text("{}")
    (tmp / "dir.csv").mkdir()
    checkpoint = tmp / "store" / "ci" / "round-0000" / "train" / "checkpoint"  # the finished round's
    for name in ("ckpt_torn", "ckpt_other"):
        shutil.copytree(checkpoint, tmp / name, ignore=shutil.ignore_patterns("optimizer*", "*.json.state"))
    weights = tmp / "ckpt_torn" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])  # a copy cut short
    _narrow_adapter(tmp / "ckpt_other" / "adapter_model.safetensors")
    return {p.name: str(p) for p in tmp.iterdir()} | {"tmp": str(tmp)}


def _narrow_adapter(path: Path) -> None:
    """Rewrite an adapter as if trained on a narrower model: every lora_A takes 100 inputs."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    save_file({k: torch.zeros(v.shape[0], 100) if "lora_A" in k else v for k, v in tensors.items()}, path)


def snapshot(store: Path) -> dict[str, str]:
    """Every file under the store (but the lease, which a refused writer may take and give back) and its sha256."""
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.name != "_lease.json"
    }


def cases(f: dict[str, str]) -> list[tuple]:
    """(name, argv) or (name, argv, environment) of each case."""
    tmp = f["tmp"]
    run = ["run", "-c", "configs/ci.yaml"]
    return [
        ("samples_per_query below 2", [*run, "--set", "generate.samples_per_query=1"]),
        ("unknown config key", [*run, "--set", "bogus.key=1"]),
        ("run name escaping the store", [*run, "--set", "run=../up"]),
        ("run name of 101 characters", [*run, "--set", "run=" + "r" * 101]),
        ("override not key=value", [*run, "--set", "nonsense"]),
        ("override value not YAML", [*run, "--set", "generate.temperature=[0.5"]),
        ("learning rate inf", [*run, "--set", "train.lr=.inf"]),
        ("learning rate nan", [*run, "--set", "train.lr=.nan"]),
        ("kl_coef inf", [*run, "--set", "train.kl_coef=.inf"]),
        ("learning rate finite but absurd", [*run, "--set", "train.lr=1.0e30"]),
        ("temperature 0 in float32", [*run, "--set", "generate.temperature=1.0e-300"]),
        ("seed negative", [*run, "--set", "seed=-1"]),
        ("seed past 2^32", [*run, "--set", "seed=99999999999999999999999"]),
        ("query column empty", [*run, "--set", "data.query_column="]),
        ("store URL missing a slash", [*run, "--set", "store.root=s3:/bucket/runs"]),
        ("a section written twice", ["run", "-c", f["twice.yaml"]]),
        ("markup in a path", [*run, "--set", "data.queries=/no/q[/b][old].csv"]),
        ("model path missing", [*run, "--set", "model.path=/nonexistent/model"]),
        ("a CUDA device on a machine without one", [*run, "--set", "model.device=cuda:0"]),
        ("lease of 1e300 seconds", [*run, "--set", "store.lease_seconds=1e300"]),
        ("10000 samples per query", [*run, "--set", "generate.samples_per_query=10000"]),
        ("64 shards for 2 queries", [*run, "--set", "generate.shards=64"]),
        ("port 70000", ["serve", "--port", "70000"]),
        ("config file missing", ["run", "-c", "/nonexistent/c.yaml"]),
        ("config path a folder", ["run", "-c", tmp]),
        ("config file binary", ["run", "-c", f["binary.yaml"]]),
        ("config file empty", ["run", "-c", f["empty.yaml"]]),
        ("config file not YAML", ["run", "-c", "Makefile"]),
        ("corpus missing", [*run, "--set", "search.corpus=/nonexistent/c.parquet"]),
        ("corpus a folder", [*run, "--set", f"search.corpus={tmp}"]),
        ("corpus not Parquet", [*run, "--set", f"search.corpus={f['text.parquet']}"]),
        ("corpus without its columns", [*run, "--set", f"search.corpus={f['wrong_columns.parquet']}"]),
        ("corpus without rows", [*run, "--set", f"search.corpus={f['no_rows.parquet']}"]),
        ("corpus with duplicate ids", [*run, "--set", f"search.corpus={f['dupe_ids.parquet']}"]),
        ("queries missing", [*run, "--set", "data.queries=/nonexistent/q.csv"]),
        ("queries a folder", [*run, "--set", f"data.queries={f['dir.csv']}"]),
        ("queries not UTF-8", [*run, "--set", f"data.queries={f['binary.csv']}"]),
        ("queries JSONL broken", [*run, "--set", f"data.queries={f['bad.jsonl']}"]),
        ("store memory://", [*run, "--set", "store.root=memory://x"]),
        ("store root empty", [*run, "--set", "store.root="]),
        ("store under a file", [*run, "--set", f"store.root={f['afile']}/sub"]),
        (
            "store on a dead S3 endpoint",
            [
                *run,
                "--set",
                "store.root=s3://b/p",
                "--set",
                "store.storage_options={endpoint_url: 'http://127.0.0.1:9'}",
            ],
        ),
        ("--rounds 0", [*run, "--rounds", "0"]),
        ("--rounds -1", [*run, "--rounds", "-1"]),
        ("stage unknown", ["stage", "no-such-stage", "--round", "0", "-c", "configs/ci.yaml"]),
        ("stage --round -1", ["stage", "train", "--round", "-1", "-c", "configs/ci.yaml"]),
        ("stage whose inputs are missing", ["stage", "train", "--round", "1", "-c", "configs/ci.yaml", "--no-flow"]),
        ("inspect an unknown run", ["inspect", "no-such-run", "-c", "configs/ci.yaml"]),
        ("report --out naming a file", ["report", "ci", "--out", f["afile"], "-c", "configs/ci.yaml"]),
        ("eval a folder that is no checkpoint", ["eval", "--checkpoint", tmp, "-c", "configs/ci.yaml"]),
        ("eval an adapter config not JSON", ["eval", "--checkpoint", f["ckpt"], "-c", "configs/ci.yaml"]),
        ("eval an adapter without weights", ["eval", "--checkpoint", f["ckpt_empty"], "-c", "configs/ci.yaml"]),
        (
            "eval an adapter whose weights are cut short",
            ["eval", "--checkpoint", f["ckpt_torn"], "-c", "configs/ci.yaml"],
        ),
        ("eval an adapter of another model", ["eval", "--checkpoint", f["ckpt_other"], "-c", "configs/ci.yaml"]),
        *late_refusals(),
        ("context past the model's window", [*run, "--set", "generate.max_context_tokens=1000000000"]),
        ("more queries a round than the file", [*run, "--set", "data.queries_per_round=1000000"]),
        ("--workers 64 with nothing sharded", [*run, "--workers", "64"]),
        ("eval --limit 0", ["eval", "--limit", "0", "-c", "configs/ci.yaml"]),
        ("report --out empty", ["report", "ci", "--out", "", "-c", "configs/ci.yaml"]),
        (
            "search service on a dead port",
            [*run, "--set", "search.backend=searxng", "--set", "search.url=http://127.0.0.1:9"],
        ),
        ("TensorBoard folder under a file", [*run, "--set", f"tracking.tensorboard_dir={f['afile']}/tb"]),
        ("storage options on a local store", [*run, "--set", "store.storage_options={endpoint_url: 'http://x'}"]),
        (
            "a secret in the storage options",
            [*run, "--set", "store.root=s3://b/p", "--set", "store.storage_options={secret: abc}"],
        ),
        ("batch size yes", [*run, "--set", "model.batch_size=yes"]),
        ("RANK not a number", run, {"RANK": "abc"}),
        ("PREFECT_HOME a file", run, {"PREFECT_HOME": f["afile"]}),
        ("SCORE_CACHE a file", run, {"SCORE_CACHE": f["afile"]}),
    ]


def late_refusals() -> list[tuple[str, list[str]]]:
    """Reruns of the finished round's stages with a config that only the optimizer, PEFT or an endpoint refuses:
    the stage must check it before clearing anything."""
    rerun = ["stage", "train", "--round", "0", "--no-flow", "--force", "-c", "configs/ci.yaml"]
    return [
        ("rerun refused by AdamW (beta 1.5)", [*rerun, "--set", "train.betas=[1.5,0.999]"]),
        ("rerun refused by PEFT (no such module)", [*rerun, "--set", "train.target_modules=[no_such_proj]"]),
        (
            "rerun with the LLM controller on a dead endpoint",
            ["stage", "harness-evolve", "--round", "0", "--no-flow", "--force", "-c", "configs/ci.yaml"]
            + ["--set", "harness.llm_controller.enabled=true"]
            + ["--set", "harness.llm_controller.base_url=http://127.0.0.1:9/v1"],
        ),
    ]


def classify(done: subprocess.CompletedProcess | None) -> tuple[str, str]:
    if done is None:
        return "accepted", "(still working at the timeout: killed)"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if "Traceback" in done.stderr:
        return "traceback", lines[-1] if lines else ""
    if done.returncode == 0:
        return "accepted", lines[-1] if lines else "(exit 0)"
    if done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"):
        return "clear", lines[0]
    return "unclear", f"exit {done.returncode}: " + " / ".join(lines[-3:])


CLASSES = ("clear", "unclear", "traceback", "accepted", "damaged")


def finished_round(tmp: str) -> None:
    """Round 0 of configs/ci.yaml in the cases' store: the finished work no case may touch."""
    argv = [sys.executable, "-m", "score.cli", "run", "-c", "configs/ci.yaml", "--rounds", "1"]
    done = subprocess.run([*argv, "--set", f"store.root={tmp}/store"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"round 0 of configs/ci.yaml failed:\n{done.stderr[-3000:]}")


def probe(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            [sys.executable, "-m", "score.cli", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "400", **env},
        )
    except subprocess.TimeoutExpired:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    args.load_at_start = os.getloadavg()
    counts: dict[str, int] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="score-bad-") as tmp:
        finished_round(tmp)
        files, before = _files(Path(tmp)), snapshot(Path(tmp) / "store")
        store = ["--set", f"store.root={tmp}/store"]  # first: a case's own store.root comes later and wins
        print(f"round 0 finished in $TMP/store ({len(before)} files)\n")
        print("| input | command | class | what the user sees |\n|---|---|---|---|")
        for name, argv, *env in cases(files):
            full = [argv[0], *store, *argv[1:]]
            kind, seen = classify(probe(full, env[0] if env else {}, args.timeout))
            if (after := snapshot(Path(tmp) / "store")) != before:
                changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
                kind, seen, before = "damaged", f"{len(changed)} files changed, e.g. {changed[0]} ({seen})", after
            counts[kind] = counts.get(kind, 0) + 1
            shown = " ".join([*(f"{k}={v}" for k, v in (env[0] if env else {}).items()), "score", *full])
            shown, seen = shown.replace(tmp, "$TMP"), seen.replace(tmp, "$TMP")
            print(f"| {name} | `{shown}` | {kind} | {seen.replace('|', '/')[:240]} |")
            rows.append({"input": name, "command": shown, "class": kind, "seen": seen[:240]})
    total = sum(counts.values())
    print(f"\n{total} bad inputs: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in CLASSES))
    figures = {"cases": total, **{k: counts.get(k, 0) for k in CLASSES}}
    print(write_record("bad_inputs", args, None, figures | {"rows": rows}))


if __name__ == "__main__":
    main()
