"""Shared fixtures: a private PREFECT_HOME, toy objects, and the real embedded model (loaded once)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

# Prefect reads its settings at import: give the whole test session its own home before anything imports it.
_PREFECT_HOME = tempfile.mkdtemp(prefix="score-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
import flows.env  # noqa: E402,F401  (Prefect's environment defaults, from their one place)
from score.config import RunConfig, load_config  # noqa: E402
from score.models.base import Sample, SamplingParams, Usage, prefixes_of  # noqa: E402
from score.search.corpus import CORPUS_SCHEMA  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class ToyBackend:
    """A deterministic stand-in for a model: plans list three searches, reports cite source [1]."""

    name = "toy"
    checkpoint = "base"

    def __init__(self, *_, **__):
        self.usage = Usage()

    def render(self, messages, continue_final=False) -> str:
        return "\n".join(f"<{m.role}>{m.content}" for m in messages) + "\n<assistant>"

    WORDS = {" Yes": 1001, " No": 1002, " Un": 1003}  # a verdict's answers: one token each, as a real tokenizer's

    def tokenize(self, text: str) -> list[int]:
        return [self.WORDS[text]] if text in self.WORDS else [ord(c) % 997 for c in text]

    def decode(self, ids) -> str:
        words = {v: k for k, v in self.WORDS.items()}
        return "".join(words.get(i) or chr(i) for i in ids)

    def sample(self, prompts, params: SamplingParams, desc="", prefix=""):
        out = []
        texts = [p if isinstance(p, str) else self.decode(p) for p in prompts]  # token ids: the tool loop's
        for p in (h + p for h, p in zip(prefixes_of(prefix, len(prompts)), texts)):
            if "</search> searches the library" in p:  # the react agent (score.agent): search, read, answer
                text = _toy_turn(p)
            elif "search queries" in p:
                text = "1. solar power\n2. wind turbine\n3. battery storage"
            elif "grading rubric" in p:  # continues the prefilled '{"weights": {'
                text = (
                    '"comprehensiveness": 0.5, "readability": 0.5}, "criteria": {"comprehensiveness": '
                    '["Covers solar, wind and storage."]}, "new_dimension": {"name": "Grid storage", '
                    '"description": "covers battery storage for the grid"}}'
                )
            else:
                text = (
                    "# Report\n\n## Findings\nSolar power grows quickly in sunny regions [1].\n\n"
                    "## Outlook\nWind power output doubled in 2021 across many regions [2]."
                )
            ids = self.tokenize(text)[: params.max_tokens]
            reason = "stop" if len(ids) < params.max_tokens else "length"
            out.append([Sample(text, ids, [-1.0] * len(ids), reason, len(self.tokenize(p))) for _ in range(params.n)])
            self.usage.completion_tokens += len(ids) * params.n
        return out

    def score(self, prompts, continuations):
        return [[-1.0] * len(c) for c in continuations]

    def next_token_logprobs(self, prefix, suffixes, candidates, then=None):
        """Scores track the report: more citations, higher digits (so corrupted copies score lower)."""
        import math

        judged = prefix.split("Report:\n", 1)[-1].split("\n\nFor comparison", 1)[0].split("\n\nEvidence", 1)[0]
        cites = judged.count("[1]") + judged.count("[2]")  # the judged report's, not its sibling's
        peak = min(9, 3 + 2 * cites)
        row = [math.log(0.91 if d == peak else 0.01) for d in range(len(candidates))]
        rows = [row for _ in suffixes]
        return (rows, [[math.log(0.1)] * len(candidates) for _ in suffixes]) if then is not None else rows

    def write_scores(self, prefix, suffixes, answers, params):
        """Writes the read-off's most likely score, so written and read-off scores agree; a verdict is Yes when
        every number of the claim is in the passages, else No (so an anchor with a changed number is caught)."""
        import math
        import re

        from score.models.base import WrittenScore

        candidates = answers.candidates
        if "Claim:" in suffixes[0]:
            claims = [s.split("Claim:", 1)[1].split("\n\n", 1)[0] for s in suffixes]
            yes = [all(n in prefix for n in re.findall(r"\d+", re.sub(r"\[\d+\]", "", c))) for c in claims]
            rows = [[math.log(x) for x in ((0.6, 0.3, 0.1) if y else (0.3, 0.6, 0.1))] for y in yes]
            written = [[candidates[0] if y else candidates[1]] for y in yes]
            return [
                WrittenScore(w, [math.log(0.6)], r, None, choices=[list(candidates)]) for w, r in zip(written, rows)
            ]
        first, after = self.next_token_logprobs(prefix, suffixes, candidates, then=answers.then or candidates[1])
        out = []
        for row, row_after in zip(first, after):
            peak = max(range(len(row)), key=row.__getitem__)
            second = [math.log(0.1), math.log(0.9)] if answers.then else None
            out.append(
                WrittenScore(
                    [candidates[peak]],
                    [math.log(0.91)],
                    row,
                    row_after if answers.then else None,
                    second,
                    [list(candidates)],
                )  # fmt: skip
            )
        return out

    def choice_logprobs(self, prompts, candidates):
        import math

        return [[math.log(0.7), math.log(0.2), math.log(0.1)][: len(candidates)] for _ in prompts]


def _toy_turn(context: str) -> str:
    """The toy agent's next turn: search, then read source 1, then answer citing [1] and [2]."""
    if context.endswith("<search>"):
        return "solar and wind power</search>"
    if "<passage" not in context:
        return "Let me read the first source. <read>1</read>"
    return (
        "<answer># Report\n\n## Findings\nSolar power grows quickly in sunny regions [1].\n\n"
        "## Outlook\nWind power output doubled in 2021 across many regions [2].</answer>"
    )


TOY_QUERIES = [  # questions the toy corpus answers, with gold: four trained on, two held out
    ("t0", "train", "What connects solar power and battery storage?", ["p1", "p3"], None),
    ("t1", "train", "How did wind power output change, and in what year?", ["p2"], "2021"),
    ("t2", "train", "What connects wind turbines and the grid?", ["p2", "p3"], None),
    ("t3", "train", "Is opera a form of theatre?", ["p4"], None),
    ("h0", "heldout", "In what year did wind power output double?", ["p2"], "2021"),
    ("h1", "heldout", "What connects solar panels and electricity?", ["p1"], None),
]


def make_toy_corpus(folder: Path) -> Path:
    """The toy corpus in `folder` (`corpus.parquet`), with TOY_QUERIES beside it (`queries.jsonl`)."""
    rows = [
        (
            "p1",
            "Solar power",
            "Solar power converts sunlight into electricity with photovoltaic panels.",
            "https://x/solar",
        ),
        (
            "p2",
            "Wind turbine",
            "A wind turbine turns wind energy into electrical energy. Wind power output doubled in 2021.",
            "https://x/wind",
        ),
        ("p3", "Battery storage", "Battery storage keeps electricity for later use on the grid.", "https://x/battery"),
        ("p4", "Opera", "Opera is a form of theatre in which music is a fundamental component.", "https://x/opera"),
    ]
    table = pa.Table.from_pylist([dict(zip(CORPUS_SCHEMA.names, r)) for r in rows], schema=CORPUS_SCHEMA)
    path = folder / "corpus.parquet"
    import json

    import pyarrow.parquet as pq

    pq.write_table(table, path)
    keys = ("id", "split", "query", "gold_passage_ids", "gold_answer")  # and its queries beside it (toy_queries)
    (folder / "queries.jsonl").write_text("".join(json.dumps(dict(zip(keys, q))) + "\n" for q in TOY_QUERIES))
    return path


@pytest.fixture
def toy_corpus(tmp_path: Path) -> Path:
    return make_toy_corpus(tmp_path)


@pytest.fixture
def toy_queries(toy_corpus: Path) -> Path:
    """TOY_QUERIES, written beside the toy corpus (as `queries.jsonl`, which toy_corpus writes)."""
    return toy_corpus.parent / "queries.jsonl"


def toy_run_config(folder: Path, corpus: Path, queries: Path | None = None) -> RunConfig:
    """configs/ci.yaml on the toy corpus and its queries (`make_toy_corpus`; `queries` another file), run `toy`, its
    store in `folder`."""
    return load_config(
        ROOT / "configs" / "ci.yaml",
        [
            f"store.root={folder / 'store'}",
            f"search.corpus={corpus}",
            f"data.queries={queries or corpus.parent / 'queries.jsonl'}",
            "data.queries_per_round=2",  # configs/ci.yaml runs one: groups of two queries in one batch
            "data.heldout=2",
            "run=toy",
            "generate.report_tokens=400",
        ],
    )


@pytest.fixture
def toy_config(tmp_path: Path, toy_corpus: Path, toy_queries: Path) -> RunConfig:
    return toy_run_config(tmp_path, toy_corpus, toy_queries)


@pytest.fixture
def toy_workspace(toy_config: RunConfig, tmp_path: Path):
    from score.workspace import Workspace

    return Workspace(toy_config, cache=tmp_path / "cache", make_backend=ToyBackend)


@pytest.fixture(scope="session")
def tiny_model():
    """The real embedded model (SmolLM2-135M-Instruct), converted once into the user cache."""
    from score.config import ModelConfig
    from score.models import load_backend

    return load_backend(ModelConfig(batch_size=8))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Marks a test whose call failed (`item.failed_call`), for fixtures that print a diagnosis at teardown."""
    report = yield
    if report.when == "call" and report.failed:
        item.failed_call = True
    return report


LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [\w.]+: ")  # score.cli's log format


def error_lines(stderr: str) -> list[str]:
    """What a command said on stderr, less blank lines and log records (a first run's "fetching ... (once)")."""
    return [line for line in stderr.splitlines() if line.strip() and not LOG_RECORD.match(line)]


def list_as_written(folder: Path, name: str) -> None:
    """A manifest in `folder` listing `name` with its real size and sha256 (a file written by hand, made readable)."""
    import hashlib
    import json

    data = (folder / name).read_bytes()
    info = {"rows": 0, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "_manifest.json").write_text(json.dumps({"files": {name: info}}))


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory) -> str:
    """A real `mlflow server` on loopback (tests/servers.py), one for the session; skipped without .venv-mlflow."""
    from servers import MLFLOW, mlflow_server

    if not MLFLOW.exists():
        pytest.skip(f"no {MLFLOW}: `make mlflow-env` builds MLflow's server environment (`make test` does)")
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture
def prefect_env(tmp_path) -> dict[str, str]:
    """A real `prefect server` on loopback (tests/servers.py) for one test: the environment its clients need."""
    from servers import prefect_server

    with prefect_server(tmp_path / "prefect-server") as env:
        yield env


@dataclass(frozen=True)
class Campaign:
    """The CI config's campaign, run once for the test session (`ci_campaign`)."""

    store: Path  # its store root: run `ci`, rounds 0 and 1
    env: dict[str, str]  # the environment of the Prefect server it ran on, still up
    tracked: tuple[str, ...]  # the --set arguments that turned MLflow on (experiment `e2e`)
    seconds: float
    stderr: str


@pytest.fixture(scope="session")
def ci_campaign(tmp_path_factory, mlflow_url) -> Iterator[Campaign]:
    """`score run -c configs/ci.yaml` (two rounds, the real model) on a real Prefect server, with MLflow (a real
    server) and TensorBoard on, once for the session: the end-to-end tests check it and start from copies of its
    finished stages (`copy_stages`) instead of each sampling and judging round 0 again. Never written after."""
    import subprocess
    import sys
    import time

    from servers import prefect_server

    folder = tmp_path_factory.mktemp("ci-campaign")
    tracked = ("--set", "tracking.mlflow=true", "--set", f"tracking.mlflow_uri={mlflow_url}")
    tracked += ("--set", "tracking.mlflow_experiment=e2e")
    tracked += ("--set", "data.heldout=2")  # every checkpoint on 2 held-out questions (configs/ci.yaml has none)
    with prefect_server(folder / "prefect-server") as env:
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "score.cli", "run", "-c", "configs/ci.yaml",
             "--set", f"store.root={folder / 'store'}", *tracked],
            cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        yield Campaign(folder / "store", env, tracked, time.perf_counter() - t0, done.stderr)


def copy_stages(campaign: Campaign, store: Path, rounds: dict[int, tuple[str, ...]]) -> Path:
    """Copy the finished stage folders of run `ci` (round -> folders, e.g. {0: ("generate", "evaluate")}) from the
    session's campaign into `store`: a run that resumes after them, as if it had written them itself."""
    import shutil

    for r, folders in rounds.items():
        for folder in folders:
            shutil.copytree(campaign.store / "ci" / f"round-{r:04d}" / folder, store / "ci" / f"round-{r:04d}" / folder)
    return store
