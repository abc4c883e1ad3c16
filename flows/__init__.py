"""The Prefect layer, and only it: `round.py` (a round flow of four stage tasks, a one-stage flow, a campaign
flow), `benchmark.py` (benchmark evaluation and the ablation), `common.py` (what they share), `env.py`
(Prefect's environment defaults: the one place they are set).

Everything here is thin: tasks call `score.runner.run_stage` or `score.benchmark.evaluate`, which do the
work behind manifests.
"""

from flows import env  # noqa: F401  (sets Prefect's environment before prefect is imported)
