"""`score`: run co-evolution campaigns, rerun one stage of one round, inspect and plot runs, measure checkpoints.

The library (score/) has no Prefect in it; the commands that run rounds import the Prefect layer
(flows/) only when they run, after checking the config, the store and the data, so that bad input fails
in a second with one line instead of after a server start.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])
err = Console(stderr=True)

ConfigOpt = typer.Option(
    None, "--config", "-c", help="YAML config (default: configs/default.yaml if present, else built-in defaults)"
)
VerboseOpt = typer.Option(False, "--verbose", "-v", help="show INFO logs of every library")
SetOpt = typer.Option(
    [], "--set", "-s", help="override a config key, e.g. --set generate.samples_per_query=6 (repeatable)"
)


WorkersOpt = typer.Option(
    1,
    help="processes running a sharded stage's shards at once (generate.shards, evaluate.shards > 1), each loading "
    "the model once; 1: the shards in turn, in this process",
)


def _check_workers(workers: int) -> None:
    if workers < 1:
        _fail(f"--workers must be >= 1, got {workers}")


def _check_workers_fit(cfg, workers: int, stages: Iterable[str]) -> None:
    """More workers than the most shards any of `stages` runs as would sit idle, each having loaded the model;
    more GPU workers than visible GPUs would put two engines on one."""
    from score.models.devices import check_workers, on_gpu, visible_devices
    from score.pipeline import stage as stage_spec

    most = max(stage_spec(name).shard_count(cfg) for name in stages)
    if workers > most:
        _fail(
            f"--workers {workers}, but at most {most} shard(s) run at once here (generate.shards "
            f"{cfg.generate.shards}, evaluate.shards {cfg.evaluate.shards}); set --workers {most} or raise the shards"
        )
    if workers > 1:
        check_workers(workers, visible_devices(), on_gpu(cfg.model.backend, cfg.model.device))


def _config(config: Path | None, overrides: list[str]):
    """The run config: --config, else configs/default.yaml when run from the checkout, else the built-in defaults."""
    from score.config import load_config

    if config is None and Path("configs/default.yaml").exists():
        config = Path("configs/default.yaml")
    return load_config(config, overrides)


def _config_tag(config: Path | None):
    """A Prefect tags context naming the config file (`config:<stem>`), which every flow run started inside it
    carries (the flows add `run:<name>` and `round:<n>`), so the UI's Runs page filters by it."""
    import contextlib

    from prefect import tags  # after flows.env, which the callers import first

    if config is None and Path("configs/default.yaml").exists():
        config = Path("configs/default.yaml")
    return tags(f"config:{config.stem}") if config is not None else contextlib.nullcontext()


def _load(config: Path | None, overrides: list[str]):
    from score.workspace import Workspace

    cfg = _config(config, overrides)
    ws = Workspace(cfg)
    ws.preflight()
    return cfg, ws


def _print_error(message: str) -> None:
    """One line, `error:` and the message as plain text: a path or value holding "[b]" is shown, never read as
    markup."""
    from rich.text import Text

    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)


def _fail(e: BaseException | str) -> NoReturn:
    _print_error(str(e))
    raise typer.Exit(2)


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        _fail(f"--port must be 1-65535, got {port}")


def _user_errors() -> tuple[type[BaseException], ...]:
    from score.benchmark import BenchmarkError
    from score.checkpoints import CheckpointError
    from score.config import ConfigError
    from score.history import CampaignStopped
    from score.models.openai_client import EndpointError
    from score.pipeline import UnknownStage
    from score.queries import QueryFileError
    from score.store.lease import RunLocked
    from score.store.schemas import ArtifactError
    from score.store.store import StoreError

    return (
        ConfigError,
        QueryFileError,
        StoreError,
        ArtifactError,
        UnknownStage,
        FileNotFoundError,
        EndpointError,
        BenchmarkError,
        CheckpointError,
        RunLocked,
        CampaignStopped,
    )


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("score").setLevel(logging.INFO)


@app.command()
def run(
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    rounds: int | None = typer.Option(None, help="rounds to run (default: campaign.rounds)"),
    workers: int = WorkersOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Run a co-evolution campaign: every round's stages in order; finished stages are skipped."""
    _logging(verbose)
    try:
        if rounds is not None and rounds < 1:
            _fail(f"--rounds must be >= 1, got {rounds} (leave it out for campaign.rounds)")
        _check_workers(workers)
        cfg, ws = _load(config, set_)
        _check_workers_fit(cfg, workers, ("generate-reports", "self-evaluate"))
        from flows.env import reap_orphaned_servers
        from flows.round import campaign_flow
        from score.store.lease import holding

        reap_orphaned_servers()
        t0 = time.perf_counter()
        with holding(ws.store, cfg.run):  # a second writer fails here, before Prefect starts
            with _config_tag(config):
                campaign_flow(cfg.model_dump(mode="json"), rounds, workers=workers)
        err.print(
            f"campaign {cfg.run}: {rounds or cfg.campaign.rounds} round(s) done in "
            f"{time.perf_counter() - t0:.0f} s; artifacts in {ws.store.display(cfg.run)}"
        )
    except _user_errors() as e:
        _fail(e)


@app.command()
def stage(
    name: str = typer.Argument(..., help="generate-reports | self-evaluate | harness-evolve | train"),
    round_idx: int = typer.Option(..., "--round", "-r", help="round number (0-based)"),
    force: bool = typer.Option(False, help="redo the stage even if its manifest matches"),
    no_flow: bool = typer.Option(
        False,
        "--no-flow",
        help="run in this process without Prefect (what `accelerate launch` needs: one flow, not one per GPU)",
    ),
    workers: int = WorkersOpt,
    holder: str | None = typer.Option(
        None, hidden=True, help="with --no-flow: write for this lease holder (the round that launched the stage)"
    ),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Run one stage of one round (a `score-stage` flow run: that task, then the plots); its inputs must be done."""
    _logging(verbose)
    try:
        from score.pipeline import stage as stage_spec

        stage_spec(name)  # an unknown stage fails here, naming the stages
        if round_idx < 0:
            _fail(f"--round must be >= 0, got {round_idx}")
        _check_workers(workers)
        if no_flow and workers > 1:
            _fail("--workers needs the flow (its process pool): leave out --no-flow, or --workers 1")
        cfg, ws = _load(config, set_)
        _check_workers_fit(cfg, workers, (name,))
        if no_flow:
            from score.runner import run_stage

            outcome = run_stage(ws, name, round_idx, force=force, holder=holder)
            err.print(f"{name} round {round_idx}: {'skipped (done)' if outcome.skipped else 'done'}: {outcome.folder}")
            return
        from flows.env import reap_orphaned_servers
        from flows.round import stage_flow
        from score.store.lease import holding

        reap_orphaned_servers()
        with holding(ws.store, cfg.run):  # a second writer fails here, before Prefect starts
            with _config_tag(config):
                folder = stage_flow(cfg.model_dump(mode="json"), name, round_idx, force=force, workers=workers)
        err.print(f"{name} round {round_idx}: {folder}")
    except _user_errors() as e:
        _fail(e)


@app.command()
def setup(config: Path | None = ConfigOpt, set_: list[str] = SetOpt) -> None:
    """Prepare what a run needs once: convert the embedded model, build the corpus and its search index."""
    _logging(True)
    try:
        cfg, ws = _load(config, set_)
        from score.models import resolve_model_path

        err.print(f"model: {resolve_model_path(cfg.model)}")
        err.print(f"search: {ws.search.fingerprint}")
    except _user_errors() as e:
        _fail(e)


@app.command()
def plan(
    gpu_gib: float = typer.Option(80.0, help="memory of one GPU, in GiB (an H100: 80)"),
    model_config: Path | None = typer.Option(
        None, help="the model's config.json (default: the one in model.path; configs/models/ holds Qwen2.5-7B's)"
    ),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
) -> None:
    """A memory plan for one GPU before GPU hours are spent: the sampler's budget (weights, LoRA slot, KV cache
    in tokens and trajectories) and one train step's peak, from the config and the model's config.json (no weights
    read). Exit 2 when either does not fit, with the fix."""
    try:
        from score.memory_plan import plan_tables
        from score.models import resolve_model_path

        cfg = _config(config, set_)
        source = model_config or Path(resolve_model_path(cfg.model)) / "config.json"
        if not source.is_file():
            raise FileNotFoundError(f"no model config.json at {source}: pass --model-config PATH/config.json")
        tables, problem = plan_tables(cfg, source, gpu_gib)
        for table in tables:
            Console().print(table)
        if problem:
            _fail(problem)
    except _user_errors() as e:
        _fail(e)


@app.command()
def serve(
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    host: str = typer.Option("127.0.0.1", help="address to bind (loopback by default)"),
    port: int = typer.Option(8000, help="port (1-65535)"),
) -> None:
    """Serve the config's model (base weights) as an OpenAI-compatible chat endpoint, e.g. for the LLM controller."""
    _logging(False)
    try:
        from score.models import load_backend

        _check_port(port)
        cfg = _config(config, set_)
        import uvicorn

        from score.serve import make_app

        uvicorn.run(make_app(load_backend(cfg.model), cfg.model.path), host=host, port=port, log_level="warning")
    except _user_errors() as e:
        _fail(e)


@app.command("search-serve")
def search_serve(
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    host: str = typer.Option("127.0.0.1", help="address to bind (loopback by default)"),
    port: int = typer.Option(8888, help="port (1-65535)"),
    results: int = typer.Option(10, min=1, max=100, help="results per search (SearXNG's page size is 10)"),
) -> None:
    """Serve the config's corpus (search.corpus, BM25) over the SearXNG JSON API (GET /search?q=...&format=json),
    so many workers share one index: point them at it with --set search.backend=searxng --set search.url=URL."""
    _logging(False)
    try:
        from score.config import ConfigError

        _check_port(port)
        cfg = _config(config, set_)
        if cfg.search.backend != "bm25":
            raise ConfigError("score search-serve serves a corpus with BM25: leave search.backend at bm25 here")
        from score.workspace import Workspace

        ws = Workspace(cfg)
        ws.preflight_corpus()
        import uvicorn

        from score.search.serve import make_search_app

        app_ = make_search_app(ws.search, results)
        err.print(f"serving {ws.search.fingerprint} on http://{host}:{port}/search?q=...&format=json", soft_wrap=True)
        uvicorn.run(app_, host=host, port=port, log_level="warning")
    except _user_errors() as e:
        _fail(e)


CheckpointOpt = typer.Option(
    "latest",
    "--checkpoint",
    help="base | latest (the run's last trained round) | round-N | a checkpoint folder (LoRA adapter or full model)",
)


@app.command("eval")
def eval_(
    checkpoint: str = CheckpointOpt,
    benchmark: str = typer.Option("deepresearch-bench", help="the benchmark (shipped: deepresearch-bench)"),
    all_languages: bool = typer.Option(False, "--all-languages", help="all 100 tasks (default: the 50 English ones)"),
    limit: int | None = typer.Option(None, help="only the first N tasks (default: benchmark.limit of the config)"),
    force: bool = typer.Option(False, help="judge again even if the evaluation's manifest matches"),
    no_flow: bool = typer.Option(False, "--no-flow", help="run in this process without Prefect"),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Score a checkpoint's reports on a benchmark, RACE-style, against a reference (default: the base model's
    reports) with a frozen judge; writes per-task, per-dimension and overall scores with their spread over judge
    runs."""
    _logging(verbose)
    try:
        if limit is not None and limit < 1:
            _fail(f"--limit must be >= 1, got {limit} (leave it out for benchmark.limit)")
        extra = (
            [f"benchmark.name={benchmark}"]
            + (["benchmark.languages=all"] if all_languages else [])
            + ([f"benchmark.limit={limit}"] if limit is not None else [])
        )
        cfg, ws = _load(config, list(set_) + extra)
        from score.benchmark import check_inputs

        _, label, _, _ = check_inputs(ws, checkpoint)  # bad input fails here, before a flow or a model starts
        if no_flow:
            from score.benchmark import evaluate

            evaluate(ws, checkpoint, force)
        else:
            from flows.benchmark import eval_flow
            from flows.env import reap_orphaned_servers

            reap_orphaned_servers()
            with _config_tag(config):
                eval_flow(cfg.model_dump(mode="json"), checkpoint, force)
        from score.store.layout import benchmark_dir

        _print_benchmark(ws.store, benchmark_dir(cfg.run, label))
    except _user_errors() as e:
        _fail(e)


def _print_benchmark(store, folder: str) -> None:
    from rich.table import Table

    from score.store.schemas import BENCHMARK, BenchmarkStats

    manifest = store.read_manifest(folder)
    stats = manifest.stats_as(BenchmarkStats)
    table = Table(
        title=f"{stats.benchmark}: {manifest.label} vs {stats.reference} ({stats.tasks} tasks, judge {stats.judge})"
    )
    for col in ("dimension", "mean", "std", "min", "max", "runs"):
        table.add_column(col)
    for r in store.read_table(folder, BENCHMARK.file).to_pylist():
        table.add_row(r["dimension"], *(f"{r[k]:.3f}" for k in ("mean", "std", "min", "max")), str(r["runs"]))
    Console().print(table)
    err.print(f"0.5 = as good as the reference; files in {store.display(folder)}")


@app.command()
def judge(
    reports: Path = typer.Option(
        ..., "--reports", help="Parquet, JSONL or CSV with columns query and report (other columns are kept)"
    ),
    out: Path = typer.Option(
        ..., "--out", help="output Parquet: the input rows plus overall, dim_<dimension> and criteria"
    ),
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        help="whose evaluator judges: base | latest | round-N | a folder (default: latest of the run, else base)",
    ),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Score outside reports with the evaluator role of a checkpoint, under the run's latest harness."""
    _logging(verbose)
    try:
        cfg, ws = _load(config, set_)
        from score.judging import judge_file

        judged = judge_file(ws, reports, out, checkpoint)
        err.print(
            f"judged {len(judged)} reports with {judged.attrs['checkpoint']} (harness "
            f"v{judged.attrs['harness_version']}): "
            f"overall mean {judged['overall'].mean():.3f}; wrote {out}"
        )
    except _user_errors() as e:
        _fail(e)


@app.command()
def ablate(
    rounds: int | None = typer.Option(None, help="rounds per arm, at least 2 (default: campaign.rounds)"),
    seeds: str | None = typer.Option(None, help="comma-separated seeds, e.g. 0,1 (default: the config's seed)"),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """SCORE vs the static baseline, per seed on the same queries and trajectory ids: the config's campaign (run
    RUN, or RUN-seedS) and its twin with the seed harness frozen and the base model judging (RUN-static, or
    RUN-static-seedS); round 0 computed once and shared; every checkpoint measured on the held-out gold queries;
    one report with intervals over the seeds. Rerun the same command to resume: finished stages are skipped."""
    _logging(verbose)
    try:
        from score.config import ConfigError

        cfg, ws = _load(config, set_)
        if cfg.harness.mode != "rules":
            raise ConfigError(
                "score ablate needs the meta-harness arm: the config has harness.mode static; use harness.mode: rules"
            )
        total = rounds if rounds is not None else cfg.campaign.rounds
        if total < 2:
            raise ConfigError(
                f"{total} round(s): the arms differ from round 1 on (round 0 is shared); use --rounds 2 or more"
            )
        seed_list = _seeds(seeds) if seeds else [cfg.seed]
        from flows.benchmark import ablate_flow
        from flows.env import reap_orphaned_servers

        reap_orphaned_servers()
        with _config_tag(config):
            folder = ablate_flow(cfg.model_dump(mode="json"), rounds, seed_list)
        err.print(f"ablation {cfg.run} vs {cfg.run}-static: report in {folder}/index.html", soft_wrap=True)
    except _user_errors() as e:
        _fail(e)


def _seeds(text: str) -> list[int]:
    from score.config import ConfigError

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text!r} is not a comma-separated list of integers; e.g. --seeds 0,1") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: give distinct integers, e.g. --seeds 0,1")
    return seeds


def _store(config: Path | None, set_: list[str]):
    """The store of the config (default configs/default.yaml), checked before anything is read."""
    from score.store.store import Store

    store = Store(_config(config, set_).store)
    store.check(write=False)  # these commands only read: a wrong path or bucket must not be created
    return store


def _run_name(run: str) -> str:
    from score.config import ConfigError, check_run_name

    try:
        return check_run_name(run)
    except ValueError as e:
        raise ConfigError(str(e)) from None


@app.command()
def runs(config: Path | None = ConfigOpt, set_: list[str] = SetOpt) -> None:
    """List the runs in the config's store (a local folder or s3://...), with their rounds and progress."""
    try:
        from score.inspection import list_runs_table

        store = _store(config, set_)
        elsewhere = "or point at another store with --set store.root=PATH (or -c CONFIG)"
        if not store.fs.exists(store.root):
            _fail(f"no store at {store.url}: nothing has run with this config here; `score run` makes one, {elsewhere}")
        table = list_runs_table(store)
        if not table.row_count:
            err.print(
                f"no runs in {store.url} yet: `score run` starts one, {elsewhere}", highlight=False, soft_wrap=True
            )
            return
        Console().print(table)
    except _user_errors() as e:
        _fail(e)


@app.command()
def inspect(
    run_name: str = typer.Argument(..., metavar="RUN", help="run name (a folder under store.root)"),
    round_idx: int | None = typer.Option(None, "--round", "-r", help="round to show (default: the last one)"),
    stage_name: str | None = typer.Option(None, "--stage", help="show only this stage's tables"),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
) -> None:
    """Print what a round did: stages and their state, rewards per query, saturation, evaluator agreement and
    detection, harness decisions with reasons, train steps, and one sample report with its rubric and scores."""
    try:
        from score.inspection import check_round, show_round
        from score.pipeline import stage as stage_spec

        _run_name(run_name)
        if stage_name is not None:
            stage_spec(stage_name)  # an unknown stage fails here, naming the stages
        store = _store(config, set_)
        show_round(Console(), store, run_name, check_round(store, run_name, round_idx), stage_name)
    except _user_errors() as e:
        _fail(e)


@app.command()
def report(
    run_name: str = typer.Argument(..., metavar="RUN", help="run name (a folder under store.root)"),
    baseline: str | None = typer.Option(
        None, help="a second run drawn on the same axes, dashed (e.g. the static-harness baseline)"
    ),
    out_: str | None = typer.Option(
        None,
        "--out",
        help="a local output folder (default: with the run in the store, RUN/plots or RUN/plots-vs-BASELINE)",
    ),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
) -> None:
    """Write PNG plots of a run per round (reward and spread, saturation, evaluator agreement and detection,
    dimension lifecycle, search depth, train) and an index.html embedding them."""
    try:
        from score.report import ablation_table, plots_into_store, write_report
        from score.store.layout import run_rounds

        _run_name(run_name)
        if baseline is not None:
            _run_name(baseline)
        if out_ is not None and not out_.strip():
            _fail("--out is empty; pass a folder (it is made if missing), or leave it out for the store")
        out = Path(out_) if out_ is not None else None
        if out is not None and out.exists() and not out.is_dir():
            _fail(f"--out {out} is a file; pass a folder (it is made if missing)")
        store = _store(config, set_)
        for name in filter(None, (run_name, baseline)):
            run_rounds(store, name)  # raises, naming the runs there are, before anything is written
        if out is None:
            folder, paths = plots_into_store(store, run_name, baseline)
        else:
            folder, paths = str(out), write_report(store, run_name, out, baseline)
        if baseline is not None and (table := ablation_table(store, run_name, baseline)):
            print(table, end="")
        err.print(f"wrote {len(paths)} plots and {folder}/index.html", soft_wrap=True)
    except _user_errors() as e:
        _fail(e)


_stopped_by: list[int] = []  # the signal that stopped this process, if one did


def _on_signal(signum, frame) -> None:
    """SIGTERM (a scheduler's or a pod's stop) unwinds like Ctrl-C: the lease is released, the flow runs are ended,
    the temporary Prefect server stops after its client; nothing half-written is visible (files are renamed into
    place, a stage's manifest comes last)."""
    _stopped_by.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def environment_problem() -> str:
    """What is wrong with the environment variables SCORE reads ("" when nothing): distributed ranks that are not
    whole numbers, a cache or Prefect home that is a file."""
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        value = os.environ.get(name)
        if value is not None and not value.strip().isdigit():
            return f"{name}={value!r} is not a whole number; unset it (accelerate launch sets it for each process)"
    for name in ("PREFECT_HOME", "SCORE_CACHE"):
        value = os.environ.get(name)
        if value and Path(value).expanduser().exists() and not Path(value).expanduser().is_dir():
            return f"{name}={value} is a file; point it at a folder (it is made if missing), or unset it"
    return ""


def main() -> None:  # console script entry point
    signal.signal(signal.SIGTERM, _on_signal)
    if problem := environment_problem():  # before typer runs: the same one line, exit 2
        _print_error(problem)
        raise SystemExit(2)
    try:
        app()
    except SystemExit:
        if _stopped_by:
            name = signal.Signals(_stopped_by[0]).name
            err.print(f"stopped by {name}: finished stages are kept; rerun the same command to resume", highlight=False)
            raise SystemExit(128 + _stopped_by[0]) from None
        raise


if __name__ == "__main__":
    sys.exit(main())
