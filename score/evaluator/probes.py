"""The evaluator, phase 2: corrupted copies of a share of the reports (score.corrupt), kinds in turn."""

from __future__ import annotations

import random
from collections import defaultdict

from score.corrupt import CORRUPTIONS


def corrupt(
    kinds: list[str], reports: list[dict], rng: random.Random, probe_share: float, seed: int, round_idx: int
) -> tuple[list[dict], dict[str, list[tuple[str, str, str]]]]:
    """3. corrupted copies of a share of the reports, kinds in turn: the probe rows, and per query the copies
    that changed (trajectory_id, kind, text)."""
    rows, probes_of = [], defaultdict(list)
    chosen = [r for r in reports if rng.random() < probe_share]
    for k, r in enumerate(chosen):
        kind = kinds[k % len(kinds)]
        text = CORRUPTIONS[kind](r["report"], seed + k)
        changed = text != r["report"]
        rows.append(
            {
                "round": round_idx,
                "query_id": r["query_id"],
                "trajectory_id": r["trajectory_id"],
                "kind": kind,
                "changed": changed,
                "text": text,
            }
        )
        if changed:
            probes_of[r["query_id"]].append((r["trajectory_id"], kind, text))
    return rows, probes_of
