"""The Slurm backend's decisions for one WorkflowStep (pure: what the listing shows in, intents out).

`plan_slurm_step` moves a running step toward its job's truth (submitting it exactly once);
`plan_slurm_cleanup` says what must go before a deleted step's finalizer does. The controller adds
and removes the finalizer and skips finished steps itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import BackendRef, Phase, WorkflowStep
from converged_bridge.backends.slurm.intents import CancelSlurmJob, SubmitSlurmJob
from converged_bridge.backends.slurm.outcome import map_slurm_job
from converged_bridge.errors import InvalidStep
from converged_bridge.reconcile.intents import Emit, Intent
from converged_bridge.reconcile.status import StatusTiming, plan_status
from converged_bridge.slurm.batch_script import build_batch_options, build_batch_script, build_log_path
from converged_bridge.slurm.jobs import SlurmJob
from converged_bridge.slurm.transport import Submission


@dataclass(frozen=True)
class SlurmView:
    """What the controller knows, this cycle, about the Slurm side of one step."""

    cluster_name: str
    cluster: SlurmClusterSpec | None  # None: no SlurmCluster of that name
    job: SlurmJob | None  # the job carrying this step's UID in the latest listing
    submitted_job_id: int | None  # submitted by this process, not listed yet
    log_dir: str
    timing: StatusTiming
    log_tail: str | None = None  # tail of the job's log, read by the shell when the job failed
    unreachable: str | None = None  # the cluster did not answer (since when, and why): nothing is decided


def resolve_user(cluster: SlurmClusterSpec, namespace: str) -> str | None:
    """The Slurm user that runs the steps of `namespace`, per the SlurmCluster's userMapping."""
    return next((m.user for m in cluster.user_mapping if m.namespace == namespace), None)


def secret_env_path(log_dir: str, user: str, uid: str) -> str:
    """The step's secret environment, in a directory of its Slurm user's own (0700): steps of several
    users may share a log directory."""
    return f"{log_dir.rstrip('/')}/.secrets-{user}/{uid}.env"


def plan_slurm_cleanup(step: WorkflowStep, view: SlurmView) -> list[Intent]:
    """A deleted step: cancel its job if it may still run (the controller then drops the finalizer)."""
    job = view.job
    user = resolve_user(view.cluster, step.metadata.namespace or "") if view.cluster else None
    job_id = job.job_id if job is not None and not job.terminal else None
    if job is None and view.submitted_job_id is not None:
        job_id = view.submitted_job_id
    if job_id is None or user is None:
        return []
    return [
        CancelSlurmJob(view.cluster_name, job_id, user),
        Emit("Normal", "Cancelling", f"cancelling Slurm job {view.cluster_name}/{job_id}"),
    ]


def plan_slurm_step(step: WorkflowStep, view: SlurmView) -> list[Intent]:
    """Intents that move a running `step` toward its Slurm job's truth. Order matters; apply in sequence."""
    meta = step.metadata
    job = view.job
    user = resolve_user(view.cluster, meta.namespace or "") if view.cluster else None
    if view.unreachable is not None:
        # nothing known of its job now: keep the phase (a running job keeps running), say why it waits
        phase = step.status.phase or Phase.PENDING
        waiting = (
            "its job's state is unknown until it answers"
            if step.status.backend_ref
            else "it is submitted when it answers"
        )
        message = f"Slurm cluster {view.cluster_name} unreachable {view.unreachable}; {waiting}"
        return _status(step, view, phase, "ClusterUnreachable", message[:1024], ref=step.status.backend_ref)
    if job is None and view.submitted_job_id is not None:
        ref = BackendRef.for_slurm_job(view.cluster_name, view.submitted_job_id)
        return _status(step, view, Phase.QUEUED, "Submitted", f"submitted as {ref.display}", ref=ref)

    if job is not None:
        outcome = map_slurm_job(job, view.cluster_name)
        ref = BackendRef.for_slurm_job(view.cluster_name, job.job_id)
        failed = outcome.phase in (Phase.FAILED, Phase.CANCELLED)
        return _status(
            step,
            view,
            outcome.phase,
            outcome.reason,
            outcome.message,
            ref=ref,
            exit_code=job.exit_code,
            start=job.start_time,
            end=job.end_time,
            log_path=job.stdout or None,
            log_tail=view.log_tail if failed else None,
        )

    if step.status.backend_ref is not None and step.status.backend_ref.job_id is not None:
        ref = step.status.backend_ref
        return _status(
            step,
            view,
            Phase.FAILED,
            "JobNotFound",
            f"Slurm no longer knows {ref.display}: it ended longer ago than slurmctld keeps jobs (MinJobAge)",
        )

    # not submitted yet: check everything, then submit exactly once
    refusal = _refusal(step, view, user)
    if refusal is not None:
        reason, message = refusal
        return _status(step, view, Phase.FAILED, reason, message, warn=True)
    if view.cluster is None or user is None:  # _refusal covered both; this narrows the types
        return []
    uid = meta.uid or ""
    has_secrets = any(e.value_from is not None for e in step.spec.env)
    secret_file = secret_env_path(view.log_dir, user, uid) if has_secrets else None
    try:
        options = build_batch_options(step, view.cluster, uid=uid, log_dir=view.log_dir)
        script = build_batch_script(
            step, view.cluster, uid=uid, log_dir=view.log_dir, secret_env_file=secret_file
        )
    except InvalidStep as e:
        message = f"invalid for Slurm: {e}"
        return _status(step, view, Phase.FAILED, "InvalidSpec", message, warn=True)
    working_dir = step.spec.working_dir or view.log_dir
    submission = Submission(script=script, options=options, working_dir=working_dir, user=user)
    return [SubmitSlurmJob(view.cluster_name, submission, view.log_dir, secret_file)]


def _refusal(step: WorkflowStep, view: SlurmView, user: str | None) -> tuple[str, str] | None:
    """Why `step` cannot be submitted at all, if it cannot."""
    if view.cluster is None:
        return "UnknownSlurmCluster", f"there is no SlurmCluster named {view.cluster_name!r}"
    if user is None:
        return (
            "NoUserMapping",
            f"SlurmCluster {view.cluster_name!r} maps no Slurm user to namespace {step.metadata.namespace!r}",
        )
    if not step.metadata.uid:
        return "InvalidSpec", "the step has no metadata.uid"
    return None


def _status(
    step: WorkflowStep,
    view: SlurmView,
    phase: Phase,
    reason: str | None,
    message: str,
    *,
    ref: BackendRef | None = None,
    exit_code: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    log_path: str | None = None,
    log_tail: str | None = None,
    warn: bool = False,
) -> list[Intent]:
    """plan_status, with the Slurm log path of a submitted step and the view's pacing of reasons."""
    uid = step.metadata.uid
    return plan_status(
        step,
        phase=phase,
        reason=reason,
        message=message,
        backend_ref=ref,
        exit_code=exit_code,
        start_time=start,
        completion_time=end,
        log_path=log_path or (build_log_path(view.log_dir, uid) if ref and uid else None),
        log_tail=log_tail,
        warn=warn,
        timing=view.timing,
    )
