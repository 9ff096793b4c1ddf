"""What a reconcile decided to do; `apply.py` is the one place that does it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from converged_bridge.api.workflowstep import WorkflowStepStatus
from converged_bridge.slurm.transport import Submission

FINALIZER = "converged.dev/backend-cleanup"


@dataclass(frozen=True)
class AddFinalizer:
    pass


@dataclass(frozen=True)
class RemoveFinalizer:
    pass


@dataclass(frozen=True)
class WriteStatus:
    status: WorkflowStepStatus


@dataclass(frozen=True)
class Emit:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class SubmitSlurmJob:
    cluster: str
    submission: Submission
    log_dir: str
    secret_env_file: str | None  # where the applier writes the step's secret values (0600) first


@dataclass(frozen=True)
class CancelSlurmJob:
    cluster: str
    job_id: int
    user: str


@dataclass(frozen=True)
class CreateObject:
    """Create a Kubernetes object for the step (an AlreadyExists means it is there: adopt it)."""

    group: str
    version: str
    plural: str
    namespace: str
    body: dict[str, Any]


@dataclass(frozen=True)
class DeleteObject:
    group: str
    version: str
    plural: str
    namespace: str
    name: str


Intent = (
    AddFinalizer
    | RemoveFinalizer
    | WriteStatus
    | Emit
    | SubmitSlurmJob
    | CancelSlurmJob
    | CreateObject
    | DeleteObject
)
