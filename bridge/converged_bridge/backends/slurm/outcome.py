"""What a Slurm job's state means for its WorkflowStep (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from converged_bridge.api.workflowstep import Phase
from converged_bridge.slurm.jobs import JobState, SlurmJob


@dataclass(frozen=True)
class SlurmOutcome:
    phase: Phase
    reason: str | None  # shown in `kubectl get wfs` (Slurm's words: Resources, TIMEOUT, NonZeroExitCode ...)
    message: str


_FAILED_STATES = {
    JobState.TIMEOUT: "exceeded its time limit",
    JobState.NODE_FAIL: "lost a node",
    JobState.OUT_OF_MEMORY: "ran out of memory",
    JobState.BOOT_FAIL: "could not boot its node",
    JobState.DEADLINE: "missed its deadline",
    JobState.PREEMPTED: "was preempted",
    JobState.REVOKED: "was revoked",
    JobState.SPECIAL_EXIT: "ended in a special exit state",
}


def map_slurm_job(job: SlurmJob, cluster: str) -> SlurmOutcome:
    """Phase, reason and message of the step that `job` runs."""
    where = f"Slurm job {cluster}/{job.job_id}"
    state = job.state
    if state == JobState.PENDING:
        why = job.reason or "Pending"
        return SlurmOutcome(Phase.QUEUED, why, f"{where} is pending ({why}) in partition {job.partition}")
    if state in (JobState.RUNNING, JobState.RESIZING):
        return SlurmOutcome(Phase.RUNNING, None, f"{where} is running on {job.nodes}")
    if state == JobState.SUSPENDED:
        return SlurmOutcome(Phase.RUNNING, "Suspended", f"{where} is suspended on {job.nodes}")
    if state == JobState.REQUEUED:
        return SlurmOutcome(Phase.QUEUED, "Requeued", f"{where} was requeued")
    if state == JobState.COMPLETED:
        return SlurmOutcome(Phase.SUCCEEDED, None, f"{where} completed with exit code 0")
    if state == JobState.CANCELLED:
        detail = f" ({job.reason})" if job.reason else ""
        return SlurmOutcome(Phase.CANCELLED, "CANCELLED", f"{where} was cancelled{detail}")
    if state == JobState.FAILED:
        if job.signal is not None:
            return SlurmOutcome(
                Phase.FAILED, job.reason or "Signaled", f"{where} was killed by signal {job.signal}"
            )
        code = "" if job.exit_code is None else f" with exit code {job.exit_code}"
        return SlurmOutcome(Phase.FAILED, job.reason or "FAILED", f"{where} failed{code}")
    if state in _FAILED_STATES:
        limit = (
            f" of {job.time_limit_minutes} min"
            if state == JobState.TIMEOUT and job.time_limit_minutes
            else ""
        )
        return SlurmOutcome(Phase.FAILED, state.value, f"{where} {_FAILED_STATES[state]}{limit}")
    return SlurmOutcome(Phase.PENDING, state.value, f"{where} is in state {state.value}")
