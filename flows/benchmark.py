"""Benchmark evaluation and the co-evolution ablation as Prefect flows.

`score-eval`: one task scoring one checkpoint on the benchmark (score.benchmark), publishing the
per-dimension scores with their spread over judge runs as a table artifact.
`score-ablate`: per seed, the same campaign twice on the same queries, with the meta-harness and the evaluator trained
alongside (run `RUN` or `RUN-seedS`) and the static baseline (run `RUN-static` or `RUN-static-seedS`: the seed harness
frozen, the base model judging); round 0 computed once and shared; every round's checkpoint measured on the held-out
gold queries (score.gold); then one report over the seeds. Finished stages and evaluations are skipped, so an
ablation is resumed by running it again, and one over the run `make run` made reuses its round 0.
"""

from __future__ import annotations

import json

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import publish_plots, resolve_config, run_name, tagged, workspace, writing
from flows.round import benchmark_task, folder_of, round_flow


@flow(name="score-eval", flow_run_name=lambda: run_name("eval-{checkpoint}", checkpoint="latest"), persist_result=False)
def eval_flow(
    config: dict | str, checkpoint: str = "latest", force: bool = False, overrides: list[str] | None = None
) -> str:
    """Score a checkpoint on the config's benchmark; a finished evaluation is skipped unless `force`.

    Args:
        config: a YAML config's path (e.g. configs/default.yaml), or a config as a dict
        checkpoint: base, latest, round-N (e.g. round-3) or a checkpoint folder
        force: redo the evaluation even where its manifest matches
        overrides: config overrides as section.key=value, e.g. ["benchmark.limit=5"]
    """
    source, resolved = config, resolve_config(config, overrides)
    with tagged(resolved, source):
        return folder_of(benchmark_task(resolved, checkpoint, force))


def arm(config: dict, seed: int, static: bool) -> dict:
    """One arm of an ablation for one seed: run `RUN` (`RUN-seedS` for another seed than the config's), or the static
    baseline `RUN-static` (`RUN-static-seedS`): the seed harness frozen and the base model judging (harness.judge
    base), trained alike (equal compute). Both measure every checkpoint on the held-out gold queries (data.heldout);
    the RACE-style benchmark runs only where the config asks (benchmark.each_round)."""
    twin = json.loads(json.dumps(config))
    twin["run"] = config["run"] + ("-static" if static else "") + ("" if seed == config["seed"] else f"-seed{seed}")
    twin["seed"] = seed
    twin["harness"]["mode"] = "static" if static else "rules"
    twin["harness"]["judge"] = "base" if static else "policy"
    return twin


@flow(name="score-ablate", flow_run_name=lambda: run_name("ablate"), persist_result=False)
def ablate_flow(
    config: dict | str, rounds: int | None = None, seeds: list[int] | None = None, overrides: list[str] | None = None
) -> str:
    """SCORE (the config, harness.mode rules) against the static baseline (seed harness, base model judging), per
    seed on the same queries: round 0 computed once (it is the same in both arms by construction: the base model
    judging under the seed harness) and copied into the static arm, whose harness-evolve alone runs; then rounds 1..
    of both arms, every round's checkpoint on the held-out gold queries; one report over the seeds. Returns the
    report folder.

    Args:
        config: a YAML config's path (e.g. configs/default.yaml), or a config as a dict; its harness.mode is rules
        rounds: rounds per arm, at least 2 (default: the config's campaign.rounds)
        seeds: the seeds, one pair of arms each (default: the config's seed)
        overrides: config overrides as section.key=value, e.g. ["benchmark.limit=3"]
    """
    source, base = config, resolve_config(config, overrides)
    if base["harness"]["mode"] != "rules":
        raise ValueError(
            "score ablate compares the meta-harness with the static baseline: the config needs harness.mode: rules"
        )
    total = rounds if rounds is not None else base["campaign"]["rounds"]
    with tagged(base, source):
        return _ablate(base, total, seeds or [base["seed"]])


def _ablate(base: dict, total: int, seeds: list[int]) -> str:
    for seed in seeds:
        score_arm, static_arm = arm(base, seed, static=False), arm(base, seed, static=True)
        _arm_round(score_arm, 0)
        share_round_zero(score_arm, static_arm)
        _arm_round(static_arm, 0)  # only its harness-evolve runs: the rest was copied and its manifests match
        for r in range(1, total):
            _arm_round(score_arm, r)
            _arm_round(static_arm, r)
    return report_pair(arm(base, base["seed"], static=False), arm(base, base["seed"], static=True)["run"])


def _arm_round(config: dict, r: int) -> None:
    """One round of one arm, its engines closed after it: the arms alternate in one process, and a second vLLM
    engine would not start beside the first (each wants model.vllm.gpu_memory_utilization of the device)."""
    round_flow(config, r)
    workspace(config).release()


@task(cache_policy=NO_CACHE, retries=0)
def share_round_zero(source: dict, target: dict) -> None:
    """Copy round 0's generate-reports, self-evaluate and train folders, and the benchmark of its checkpoint (with
    the reports it judged), from one arm to the other."""
    from score.pipeline import EVALUATE, GENERATE, TRAIN
    from score.store.layout import benchmark_dir, benchmark_reports_dir, heldout_dir, round_label, stage_dir

    ws = workspace(source)
    folders = [stage_dir("{run}", 0, s.folder) for s in (GENERATE, EVALUATE, TRAIN)]
    folders += [benchmark_dir("{run}", round_label(0))]
    folders += [benchmark_reports_dir("{run}", label) for label in ("base", round_label(0))]
    folders += [heldout_dir("{run}", label) for label in ("base", round_label(0))]
    with writing(target):  # the static arm's one writer, as its rounds are
        for folder in folders:
            src, dst = folder.format(run=source["run"]), folder.format(run=target["run"])
            if ws.store.read_manifest(src) is not None:
                ws.store.copy_folder(src, dst)
    get_run_logger().info("round 0 of %s copied into %s (identical by construction)", source["run"], target["run"])


@task(cache_policy=NO_CACHE, retries=0)
def report_pair(config: dict, baseline: str) -> str:
    ws = workspace(config)
    title = f"{ws.cfg.run} (meta-harness, solid) vs {baseline} (static harness, dashed)"
    return str(publish_plots(ws, "ablation", title, f"ablation: {ws.cfg.run} vs {baseline}", baseline)[0])
