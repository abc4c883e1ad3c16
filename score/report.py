"""Plots of a run, round by round: `score report RUN [--baseline RUN2] [--out DIR]`.

Reads each finished round's `evaluate/summary.parquet`, `harness/harness.parquet` and `train` manifest
and writes PNGs plus an `index.html` that embeds them:

    reward.png       solver reward mean, with the mean within-query spread as a band
    saturation.png   share of queries whose K rewards are flat (no GRPO signal)
    evaluator.png    judgement consistency, and corruption detection (chance 0.5) with its Wilson interval and the
                     count of distinct probed reports beside each point
    dimensions.png   the dimension lifecycle: which dimension was active / candidate / retired when
    search.png       search depth and hops (left axis), strictness (right axis) the evaluator ran under
    train.png        samples trained per round, and their mean KL to the base (right axis)

Every plot has labelled axes and one legend holding every series drawn, twin axes included (`figure`).
    benchmark.png    the benchmark score of each round's checkpoint (`score eval`, held out), with its spread over judge
                     runs, beside the in-loop solver reward (red): the judge-hacking alarm's two sides
    heldout.png      each checkpoint's held-out gold answer accuracy and gold recall (score.gold; round -1: base)
    hacking.png      the hacking gap (in-loop reward - gold score, same reports) and the flat groups at zero and top

With a baseline (for example the static-harness run of `score ablate`) its curves share the axes, dashed, and
`ablation.md` (also in index.html, and printed by `score report`) holds per round and arm, over the seeds of each
(the run and its siblings `RUN-seedN`, as `score ablate --seeds` names them): the held-out gold (answer accuracy, gold
recall, 2+-call share), the hacking gap, flat groups at the top and at zero, solver samples trained, saturation rate,
solver reward spread, the evaluator's probe detection on the round's fresh reports, the benchmark score (when
measured), and what the harness changed (active dimensions, search depth and hops, criteria, strictness, alarms),
each as the mean and its 95% t interval; the gold plots are drawn over the seeds too.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from score.gold import round_gold
from score.intervals import mean_interval
from score.models.embedded import cache_root
from score.pipeline import EVALUATE, EVOLVE, TRAIN, EvolveStats, TrainStats
from score.store.layout import benchmark_dir, plots_dir, round_label, run_rounds, stage_dir
from score.store.manifest import fingerprint
from score.store.schemas import DIMENSION_STATS, HARNESS, SUMMARY, ArtifactError, BenchmarkStats
from score.store.store import Store


@dataclass
class RunSeries:
    run: str
    rounds: list[int] = field(default_factory=list)  # rounds with a finished self-evaluate
    summary: list[dict] = field(default_factory=list)  # one summary row per round in `rounds`
    status: dict[str, dict[int, str]] = field(
        default_factory=dict
    )  # dimension -> round -> status it was evaluated under
    train: dict[int, TrainStats] = field(default_factory=dict)  # round -> train statistics
    benchmark: dict[int, BenchmarkStats] = field(default_factory=dict)  # round -> benchmark score of its checkpoint
    evolve: dict[int, EvolveStats] = field(default_factory=dict)  # round -> the harness its harness-evolve wrote
    heldout: dict[int, dict] = field(default_factory=dict)  # round -> its checkpoint's held-out gold (-1: base)
    gold: dict[int, dict] = field(default_factory=dict)  # round -> its training reports' gold, with the hacking gap
    seeds: list[RunSeries] = field(default_factory=list)  # an ablation arm: the series of each of its seeds


def load_series(store: Store, run: str) -> RunSeries:
    s = RunSeries(run)
    for r in run_rounds(store, run):
        evaluate = stage_dir(run, r, EVALUATE.folder)
        if store.read_manifest(evaluate) is None:
            continue
        s.rounds.append(r)
        s.summary.append(store.read_table(evaluate, SUMMARY.file).to_pylist()[0])
        for d in store.read_rows(evaluate, DIMENSION_STATS):
            s.status.setdefault(d.dimension, {})[r] = d.status
        harness = stage_dir(run, r, EVOLVE.folder)
        if (
            store.read_manifest(harness) is not None
        ):  # what harness-evolve decided after this round: retirements show from r+1
            for d in store.read_rows(harness, HARNESS):
                if d.status == "retired":
                    s.status.setdefault(d.id, {}).setdefault(r + 1, "retired")
        evolved = store.read_manifest(harness)
        if evolved is not None:
            s.evolve[r] = evolved.stats_as(EvolveStats)
        train = store.read_manifest(stage_dir(run, r, TRAIN.folder))
        if train is not None:
            s.train[r] = train.stats_as(TrainStats)
        bench = store.read_manifest(benchmark_dir(run, round_label(r)))
        if bench is not None:
            s.benchmark[r] = bench.stats_as(BenchmarkStats)
        _load_gold(store, s, r)
    return s


def _load_gold(store: Store, s: RunSeries, r: int) -> None:
    """Round r's gold (score.gold): its training reports' measures and hacking gap, its checkpoint's held-out ones."""
    for row in round_gold(store, s.run, r):
        if row["what"] == "training reports":
            s.gold[r] = row
        else:
            s.heldout[-1 if row["what"].endswith("base") else r] = row


def plots_into_store(store: Store, run: str, baseline: str | None = None) -> tuple[str, list[Path]]:
    """Plot the run into the store, with its rounds (`plots_dir`: RUN/plots, or RUN/plots-vs-BASELINE), so two
    stores never share plots and a run on S3 keeps them there. Drawn in place on a local store, else in a local
    staging folder then copied up. Returns the folder's address and the PNGs as local files."""
    folder = plots_dir(run, baseline)
    out = cache_root() / "plots" / fingerprint(store.url) / folder if store.remote else Path(store.path(folder))
    paths = write_report(store, run, out, baseline)
    if store.remote:
        for p in sorted(out.iterdir()):
            store.write_file(folder, p.name, p)
    return store.display(folder), paths


def write_report(store: Store, run: str, out: Path, baseline: str | None = None) -> list[Path]:
    """Write the PNGs and index.html into `out`; returns the PNG paths."""
    plt = _pyplot()

    runs = [load_series(store, run)] + ([load_series(store, baseline)] if baseline else [])
    if baseline:  # an ablation: each arm's seeds, for the plots drawn over them
        for s in runs:
            s.seeds = [load_series(store, name) for name in seed_group(store, s.run)]
    if not runs[0].rounds:
        raise ArtifactError(f"run {run!r} has no finished self-evaluate yet; nothing to plot")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PLOTS:
        fig = figure(name, runs)
        path = out / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    table = ablation_table(store, run, baseline) if baseline else ""
    if table:
        (out / "ablation.md").write_text(table)
    _write_html(out / "index.html", runs, paths, table)
    return paths


def figure(name: str, runs: list[RunSeries]):
    """One plot as a matplotlib figure: labelled axes, and one legend holding every series of every axis."""
    fig, ax = _pyplot().subplots(figsize=(6.4, 3.6), dpi=110)
    ax.set_xticks(sorted({r for s in runs for r in s.rounds}))  # whole rounds (a plot may set its own)
    ax.set_xlabel("round")
    PLOTS[name](ax, runs)
    ax.grid(alpha=0.3)
    handles, labels = [], []
    for a in fig.axes:  # twin axes too: one legend for all
        h, label = a.get_legend_handles_labels()
        handles, labels = handles + h, labels + label
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def seed_group(store: Store, run: str) -> list[str]:
    """`run` and its seed siblings `run-seedN` (an arm of `score ablate --seeds`), those in the store."""
    pattern = re.compile(re.escape(run) + r"(-seed\d+)?")
    return [n for n in store.list_runs() if pattern.fullmatch(n)]


ABLATION_METRICS = {  # column -> what it reads from one run's round (None: not there)
    "held-out answer accuracy": lambda s, r: s.heldout.get(r, {}).get("answer_correct"),
    "held-out gold recall": lambda s, r: s.heldout.get(r, {}).get("gold_recall"),
    "held-out 2+ calls": lambda s, r: s.heldout.get(r, {}).get("multi_call_share"),
    "hacking gap": lambda s, r: s.gold.get(r, {}).get("gap"),
    "flat at top": lambda s, r: _summary_of(s, r, "flat_at_top"),
    "flat at zero": lambda s, r: _summary_of(s, r, "flat_at_zero"),
    "solver samples": lambda s, r: s.train[r].solver_samples if r in s.train else None,
    "saturation": lambda s, r: _summary_of(s, r, "saturation_rate"),
    "reward spread": lambda s, r: _summary_of(s, r, "reward_spread"),
    "probe detection": lambda s, r: _summary_of(s, r, "detection"),
    "benchmark": lambda s, r: s.benchmark[r].score if r in s.benchmark else None,
    "active dims": lambda s, r: len(s.evolve[r].active) if r in s.evolve else None,
    "search depth": lambda s, r: s.evolve[r].search_depth if r in s.evolve else None,
    "search hops": lambda s, r: s.evolve[r].search_hops if r in s.evolve else None,
    "criteria": lambda s, r: s.evolve[r].criteria_per_dimension if r in s.evolve else None,
    "strictness": lambda s, r: s.evolve[r].strictness if r in s.evolve else None,
    "alarms": lambda s, r: s.evolve[r].alarms if r in s.evolve else None,
}


def _summary_of(s: RunSeries, r: int, key: str) -> float | None:
    return s.summary[s.rounds.index(r)].get(key) if r in s.rounds else None


def ablation_table(store: Store, run: str, baseline: str) -> str:
    """A markdown table: per round and arm, each metric's mean over the arm's seeds with its 95% t interval (the
    harness columns are what round r's harness-evolve wrote, i.e. what round r+1 runs under)."""
    arms = {name: [load_series(store, r) for r in seed_group(store, name)] for name in (run, baseline)}
    rounds = sorted({r for group in arms.values() for s in group for r in s.rounds})
    if any(-1 in s.heldout for group in arms.values() for s in group):
        rounds = [-1, *rounds]  # the base weights on the held-out queries: where both arms start
    head = "| round | arm | seeds | " + " | ".join(ABLATION_METRICS) + " |"
    lines = [head, "|" + "---|" * (3 + len(ABLATION_METRICS))]
    for r in rounds:
        for name, group in arms.items():
            cells = [_cell([v for s in group if (v := read(s, r)) is not None]) for read in ABLATION_METRICS.values()]
            seeds = sum(any(read(s, r) is not None for read in ABLATION_METRICS.values()) for s in group)
            label = "base" if r == -1 else r
            lines.append(f"| {label} | {name} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(values: list[float]) -> str:
    """mean [low, high] over seeds (95% t); one seed: the value alone; none: -."""
    if not values:
        return "-"
    mean, low, high = mean_interval([float(v) for v in values])
    if not math.isfinite(low):
        return f"{mean:.3g}"
    return f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def _style(i: int) -> dict:
    return {"linestyle": "-" if i == 0 else "--", "marker": "o" if i == 0 else "s"}


def _plot_reward(ax, runs: list[RunSeries]) -> None:
    for i, s in enumerate(runs):
        mean = [x["reward_mean"] for x in s.summary]
        spread = [x["reward_spread"] for x in s.summary]
        line = ax.plot(s.rounds, mean, label=f"{s.run}: mean", **_style(i))[0]
        ax.fill_between(
            s.rounds,
            [m - d for m, d in zip(mean, spread)],
            [m + d for m, d in zip(mean, spread)],
            alpha=0.15,
            color=line.get_color(),
            label=f"{s.run}: mean +- within-query spread",
        )
        ax.plot(
            s.rounds,
            spread,
            label=f"{s.run}: within-query spread",
            color=line.get_color(),
            linestyle=":",
            marker="x",
            markersize=7,
        )
    ax.set_title("solver reward (band: mean within-query std)")
    ax.set_ylabel("reward (0-1)")


def _plot_saturation(ax, runs: list[RunSeries]) -> None:
    for i, s in enumerate(runs):
        ax.plot(s.rounds, [x["saturation_rate"] for x in s.summary], label=s.run, **_style(i))
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("saturation: share of queries with flat rewards")
    ax.set_ylabel("share of queries")


def _plot_evaluator(ax, runs: list[RunSeries]) -> None:
    from score.intervals import wilson

    for i, s in enumerate(runs):
        ax.plot(s.rounds, [x["agreement"] for x in s.summary], label=f"{s.run}: judgement consistency", **_style(i))
        probed = [(r, x["detection"], x["probed_reports"]) for r, x in zip(s.rounds, s.summary) if x["probed_reports"]]
        rounds, detection, n = [r for r, _, _ in probed], [d for _, d, _ in probed], [k for _, _, k in probed]
        bounds = [wilson(d * k, k) for d, k in zip(detection, n)]  # a round with no probed report has no point
        ax.errorbar(
            rounds,
            detection,
            yerr=[[d - lo for d, (lo, _) in zip(detection, bounds)], [hi - d for d, (_, hi) in zip(detection, bounds)]],
            capsize=3,
            label=f"{s.run}: corruption detection (bars: Wilson interval)",
            linestyle=_style(i)["linestyle"],
            marker="^",
        )
        for r, d, k in zip(s.rounds, detection, n):
            ax.annotate(f"n={k}", (r, d), textcoords="offset points", xytext=(6, -10), fontsize=7)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":", label="detection at chance")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("evaluator (n: distinct probed reports)")
    ax.set_ylabel("share (0-1)")


def _plot_dimensions(ax, runs: list[RunSeries]) -> None:
    colors = {"active": "tab:green", "candidate": "tab:orange", "retired": "lightgrey"}
    s = runs[0]
    dims = sorted(s.status)
    for y, d in enumerate(dims):
        for r, status in s.status[d].items():
            ax.barh(y, 0.9, left=r - 0.45, color=colors.get(status, "white"), edgecolor="white")
    ax.set_yticks(range(len(dims)))
    ax.set_yticklabels(dims, fontsize=8)
    for status, c in colors.items():
        ax.barh(0, 0, color=c, label=status)
    columns = sorted({r for d in s.status.values() for r in d})
    ax.set_xticks(columns)  # a column past the last round: the harness that round wrote, for the next
    ax.set_xticklabels([str(r) if r in s.rounds else f"{r}\n(next)" for r in columns])
    ax.set_title(f"dimension lifecycle ({s.run})")
    ax.set_xlabel("round (next: what the last round's harness-evolve decided)")
    ax.set_ylabel("dimension")


def _plot_search(ax, runs: list[RunSeries]) -> None:
    twin = ax.twinx()
    for i, s in enumerate(runs):
        ax.plot(s.rounds, [x["search_depth"] for x in s.summary], label=f"{s.run}: search depth", **_style(i))
        ax.plot(
            s.rounds,
            [x["search_hops"] for x in s.summary],
            label=f"{s.run}: search hops",
            **{**_style(i), "marker": "D"},
        )
        twin.plot(
            s.rounds,
            [x["strictness"] for x in s.summary],
            color="tab:red",
            label=f"{s.run}: strictness",
            **{**_style(i), "marker": "^"},
        )
    ax.set_ylabel("claims per report (depth)\ncalls per claim (hops)")
    twin.set_ylabel("strictness level (0-3)", color="tab:red")
    twin.set_ylim(-0.2, 3.2)
    ax.set_title("evaluation environment")


def _plot_train(ax, runs: list[RunSeries]) -> None:
    for i, s in enumerate(runs):
        rounds = sorted(s.train)
        ax.plot(rounds, [s.train[r].samples for r in rounds], label=f"{s.run}: samples", markersize=9, **_style(i))
    ax.set_title("train: samples per round (flat groups give none)")
    ax.set_ylabel("samples")
    twin = ax.twinx()
    for i, s in enumerate(runs):
        rounds = [r for r in sorted(s.train) if s.train[r].kl_mean is not None]
        twin.plot(
            rounds,
            [s.train[r].kl_mean for r in rounds],
            color="tab:red",
            label=f"{s.run}: mean KL to base",
            **{**_style(i), "marker": "x"},
        )
    twin.set_ylabel("mean KL to base", color="tab:red")


def _plot_benchmark(ax, runs: list[RunSeries]) -> None:
    for i, s in enumerate(runs):
        rounds = sorted(s.benchmark)
        if rounds:
            ax.errorbar(
                rounds,
                [s.benchmark[r].score for r in rounds],
                yerr=[s.benchmark[r].score_std for r in rounds],
                capsize=3,
                label=f"{s.run}: benchmark",
                **_style(i),
            )
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":", label="as good as the reference")
    twin = ax.twinx()  # beside it, the in-loop reward: rising while the held-out score falls is the judge-hacking sign
    for i, s in enumerate(runs):
        twin.plot(
            s.rounds,
            [x["reward_mean"] for x in s.summary],
            color="tab:red",
            alpha=0.6,
            label=f"{s.run}: in-loop reward",
            **{**_style(i), "marker": "x"},
        )
    twin.set_ylabel("in-loop solver reward", color="tab:red")
    names = {f"{s.benchmark[r].benchmark}, judge {s.benchmark[r].judge}" for s in runs for r in s.benchmark}
    ax.set_title(
        "benchmark: checkpoint after the round vs reference"
        + (f"\n({'; '.join(sorted(names))})" if names else " (none: run score eval)"),
        fontsize=9,
    )
    ax.set_ylabel("score (bars: std over judge runs)")


def _over_seeds(s: RunSeries, read) -> tuple[list[int], list[float], list[float]]:
    """Per round: the mean over the arm's seeds (`s.seeds`, or the run alone) of `read(series, round)`, and the
    half-width of its 95% t interval (0 with one seed)."""
    group = s.seeds or [s]
    rounds = sorted({r for g in group for r in (*g.heldout, *g.gold, *g.rounds)})
    xs, means, errs = [], [], []
    for r in rounds:
        values = [v for g in group if (v := read(g, r)) is not None]
        if values:
            mean, low, high = mean_interval([float(v) for v in values])
            xs, means, errs = xs + [r], means + [mean], errs + [(high - low) / 2 if math.isfinite(low) else 0.0]
    return xs, means, errs


def _plot_over_seeds(ax, runs: list[RunSeries], series: dict[str, object]) -> None:
    for i, s in enumerate(runs):
        for j, (name, read) in enumerate(series.items()):
            xs, means, errs = _over_seeds(s, read)
            if xs:
                n = len(s.seeds) or 1
                ax.errorbar(
                    xs, means, yerr=errs, capsize=3, color=f"C{j}", label=f"{s.run}: {name} ({n} seed(s))", **_style(i)
                )


def _plot_heldout(ax, runs: list[RunSeries]) -> None:
    _plot_over_seeds(ax, runs, {m: ABLATION_METRICS[m] for m in ("held-out answer accuracy", "held-out gold recall")})
    ax.set_xticks(sorted({r for s in runs for g in (s.seeds or [s]) for r in g.heldout}) or [0])
    ax.set_title("held-out gold, each round's checkpoint (round -1: base); bars: 95% t over seeds", fontsize=9)
    ax.set_ylabel("share (gold: never a reward)")


def _plot_hacking(ax, runs: list[RunSeries]) -> None:
    _plot_over_seeds(ax, runs, {m: ABLATION_METRICS[m] for m in ("hacking gap", "flat at top", "flat at zero")})
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":", label="no gap")
    ax.set_title("in-loop reward - gold score (same reports), and flat groups; bars: 95% t over seeds", fontsize=9)
    ax.set_ylabel("reward units / share of queries")


PLOTS = {  # file stem -> what draws it
    "reward": _plot_reward,
    "saturation": _plot_saturation,
    "evaluator": _plot_evaluator,
    "dimensions": _plot_dimensions,
    "search": _plot_search,
    "train": _plot_train,
    "benchmark": _plot_benchmark,
    "heldout": _plot_heldout,
    "hacking": _plot_hacking,
}


def _write_html(path: Path, runs: list[RunSeries], pngs: list[Path], table: str = "") -> None:
    rows = "".join(
        f"<tr><td>{html.escape(s.run)}</td><td>{r}</td>"
        + "".join(
            f"<td>{x[k]:.3f}</td>" if x[k] is not None else "<td>none probed</td>"
            for k in ("reward_mean", "reward_spread", "saturation_rate", "agreement", "detection")
        )
        + (f"<td>{b.score:.3f} &plusmn; {b.score_std:.3f}</td>" if (b := s.benchmark.get(r)) else "<td>-</td>")
        + "</tr>"
        for s in runs
        for r, x in zip(s.rounds, s.summary)
    )
    images = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" '
        f'alt="{p.stem}"><figcaption>{p.name}</figcaption></figure>'
        for p in pngs
    )
    title = " vs ".join(html.escape(s.run) for s in runs)
    path.write_text(
        f"<!doctype html><meta charset=utf-8><title>SCORE: {title}</title>"
        "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}figure{display:inline-block;margin:8px}"
        "td,th{padding:2px 8px;text-align:right}</style>"
        f"<h1>SCORE: {title}</h1><table><tr><th>run</th><th>round</th><th>reward</th><th>spread</th><th>saturation</th>"
        f"<th>agreement</th><th>detection</th><th>benchmark</th></tr>{rows}</table>"
        + (f"<h2>Over seeds (mean [95% t interval])</h2><pre>{html.escape(table)}</pre>" if table else "")
        + images
    )
