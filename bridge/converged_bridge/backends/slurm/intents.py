"""What only the Slurm backend can do: submit a step's or an allocation's job (exactly once), cancel it."""

from __future__ import annotations

from dataclasses import dataclass

from converged_bridge.allocation.paths import AllocationPaths
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


@dataclass(frozen=True)
class SubmitAllocationJob(BackendIntent):
    """The batch job of a StepAllocation: its agent, on one node (see `allocation.py`)."""

    cluster: str
    submission: Submission
    paths: AllocationPaths  # its directories, made before the job starts
    warm_launcher: str | None = None  # the spool's `warm` script, written before the job starts
