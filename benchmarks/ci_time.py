"""What CI costs: `.ci/run` on a fresh clone of HEAD, with `../shared` beside it and an empty SCORE_CACHE (the model
converted and the corpus built again), timed as a whole and by part (set-up, `make test`, `make test-vllm`), with
the thirty slowest tests `make test` prints. pip's download cache is this machine's: a CI machine without one
spends longer on the set-up. Takes about as long as CI (40-50 minutes on 2 cores); run nothing else beside it.

Run: `python benchmarks/ci_time.py [--shared ../shared]`; prints the figures and writes them as a record
(benchmarks/records/, rendered into docs/measurements.md). The clone and its log stay in a temporary folder,
named at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from common import write_record

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("make -j2 install mlflow-env", "make test", "wait", "make test-vllm")  # .ci/run's steps, in its order


def slowest(log: str) -> list[dict]:
    """The `--durations` table of pytest's output: seconds, phase and test of each line.

    >>> slowest("== slowest 30 durations ==\\n12.50s call     tests/test_a.py::test_b\\n== short ==")
    [{'seconds': 12.5, 'phase': 'call', 'test': 'tests/test_a.py::test_b'}]
    """
    header = re.search(r"slowest \d+ durations", log)
    table = log[header.end() :] if header else ""
    found = re.findall(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)", table, re.MULTILINE)
    return [{"seconds": float(s), "phase": p, "test": t} for s, p, t in found]


def step_seconds(log: str, end: float) -> dict[str, int | None]:
    """Seconds each step of `.ci/run` took, from the lines it prints as each starts (`== .ci/run: <step> (at <epoch
    seconds>)`): until the next step's line, the last until `end`; None for a step never reached.

    >>> step_seconds("== .ci/run: make -j2 install mlflow-env (at 100)\\n== .ci/run: make test (at 160)\\n", 400.0)
    {'make -j2 install mlflow-env': 60, 'make test': 240, 'wait': None, 'make test-vllm': None}
    """
    found = re.findall(r"^== \.ci/run: (.+) \(at (\d+)\)$", log, re.MULTILINE)
    at = {re.sub(r"^wait \d+$", "wait", cmd): int(t) for cmd, t in found}  # `wait <pid>`
    times = [at.get(step) for step in STEPS]
    out = {}
    for i, step in enumerate(STEPS):
        later = [t for t in times[i + 1 :] if t is not None]
        out[step] = None if times[i] is None else round((later[0] if later else end) - times[i])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="the shared folder CI puts beside")
    args = parser.parse_args()
    args.load_at_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="score-ci-"))
    (work / "shared").symlink_to(Path(args.shared).resolve())
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "repo")], check=True)
    env = {**os.environ, "SCORE_CACHE": str(work / "score-cache")}
    log_path = work / "ci.log"
    t0, start = time.perf_counter(), time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["bash", ".ci/run"], cwd=work / "repo", env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        code = proc.wait()
    seconds = time.perf_counter() - t0
    text = log_path.read_text()
    clone = ["git", "-C", str(work / "repo"), "log", "-1", "--format=%h %s"]
    figures = {
        "measured_commit": subprocess.run(clone, capture_output=True, text=True).stdout.strip()[:120],  # clean
        "exit": code,
        "seconds": round(seconds),
        "minutes": round(seconds / 60, 1),
        "summaries": re.findall(r"^(\d+ (?:passed|failed).* in [\d.]+s.*)$", text, re.MULTILINE),  # test, vllm
        "steps_seconds": step_seconds(text, start + seconds),
        "slowest": slowest(text),
    }
    for k, v in figures.items():
        print(f"{k}: {v}")
    print(f"clone and log: {work}")
    print(write_record("ci_time", args, None, figures))


if __name__ == "__main__":
    main()
