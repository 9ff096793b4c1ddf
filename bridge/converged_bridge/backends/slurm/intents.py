"""What only the Slurm backend can do: submit a step's job (exactly once) and cancel it."""

from __future__ import annotations

from dataclasses import dataclass

from converged_bridge.reconcile.intents import BackendIntent
from converged_bridge.slurm.transport import Submission


@dataclass(frozen=True)
class SubmitSlurmJob(BackendIntent):
    cluster: str
    submission: Submission
    log_dir: str
    secret_env_file: str | None  # where the unit writes the step's secret values (0600) first


@dataclass(frozen=True)
class CancelSlurmJob(BackendIntent):
    cluster: str
    job_id: int
    user: str
