"""The Prefect layer: a round flow (one task per stage) and a campaign flow over rounds.

Everything here is thin: tasks call `score.runner.run_stage`, which does the work behind manifests.
"""

from flows import env  # noqa: F401  (sets Prefect's environment before prefect is imported)
