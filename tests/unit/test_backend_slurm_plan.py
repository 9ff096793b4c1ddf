"""The Slurm backend's pure decisions (plan_slurm_step, plan_slurm_cleanup, map_slurm_job) inside the
lifecycle every backend shares, fed with jobs from real Slurm output."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import Phase, WorkflowStep
from converged_bridge.backends.slurm.intents import CancelSlurmJob, SubmitSlurmJob
from converged_bridge.backends.slurm.outcome import map_slurm_job
from converged_bridge.backends.slurm.plan import SlurmView, plan_slurm_cleanup, plan_slurm_step
from converged_bridge.reconcile.intents import AddFinalizer, Emit, Intent, RemoveFinalizer, WriteStatus
from converged_bridge.reconcile.lifecycle import plan_lifecycle
from converged_bridge.reconcile.status import StatusTiming
from converged_bridge.slurm.jobs import JobState, SlurmJob, parse_jobs_v0038
from converged_bridge.wire import FINALIZER

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm-22.05"
UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
JOBS = {j.job_id: j for j in parse_jobs_v0038(json.loads((DATA / "squeue.json").read_text()))}
CLUSTER_SPEC: dict[str, Any] = {  # a SlurmCluster's spec as the API holds it
    "transport": "cli",
    "containerRuntime": "none",
    "defaults": {"partition": "cpu"},
    "userMapping": [
        {
            "namespace": "team-a",
            "user": "alice",
            "tokenSecretRef": {"namespace": "converged-system", "name": "t", "key": "token"},
        }
    ],
}
CLUSTER = SlurmClusterSpec.model_validate(CLUSTER_SPEC)


def make_step(
    *,
    finalizers: tuple[str, ...] = (FINALIZER,),
    status: dict[str, Any] | None = None,
    deleting: bool = False,
    namespace: str = "team-a",
    env: list[dict[str, Any]] | None = None,
    generation: int = 1,
) -> WorkflowStep:
    meta: dict[str, Any] = {
        "name": "s",
        "namespace": namespace,
        "uid": UID,
        "generation": generation,
        "finalizers": list(finalizers),
    }
    if deleting:
        meta["deletionTimestamp"] = NOW.isoformat()
    return WorkflowStep.model_validate(
        {
            "metadata": meta,
            "spec": {
                "workflow": {"runId": "r", "rule": "map", "jobId": 1},
                "backend": "slurm",
                "slurm": {"cluster": "hpc"},
                "command": ["true"],
                "env": env or [],
            },
            "status": status or {},
        }
    )


def view(
    job: SlurmJob | None = None,
    *,
    submitted: int | None = None,
    cluster: SlurmClusterSpec | None = CLUSTER,
    tail: str | None = None,
) -> SlurmView:
    return SlurmView(
        cluster_name="hpc",
        cluster=cluster,
        job=job,
        submitted_job_id=submitted,
        log_dir="/shared/logs",
        timing=StatusTiming(now=NOW),
        log_tail=tail,
    )


def plan(step: WorkflowStep, view: SlurmView) -> list[Intent]:
    """The controller's whole plan for a Slurm step: the shared lifecycle around the Slurm plans."""
    intents = plan_lifecycle(
        step, running=lambda: plan_slurm_step(step, view), cleanup=lambda: plan_slurm_cleanup(step, view)
    )
    assert intents is not None  # the plans always decide once the view is there
    return intents


def test_new_step_gets_its_finalizer_then_one_submission_as_the_mapped_user() -> None:
    intents = plan(make_step(finalizers=()), view())
    assert isinstance(intents[0], AddFinalizer)
    submit = intents[1]
    assert isinstance(submit, SubmitSlurmJob) and len(intents) == 2
    assert submit.submission.user == "alice"
    assert submit.submission.options.comment == f"converged:{UID}"
    assert submit.submission.options.partition == "cpu"
    assert submit.secret_env_file is None


def test_secret_env_goes_to_a_file_not_the_script() -> None:
    env = [{"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]
    (submit,) = plan(make_step(env=env), view())
    assert isinstance(submit, SubmitSlurmJob)
    assert submit.secret_env_file == f"/shared/logs/.secrets-alice/{UID}.env"
    script = submit.submission.script
    assert ". /shared/logs/.secrets-alice/" in script and "creds" not in script


def test_a_listed_job_is_adopted_never_resubmitted() -> None:
    running = JOBS[14]
    intents = plan(make_step(), view(running))
    assert not any(isinstance(i, SubmitSlurmJob) for i in intents)
    write = next(i for i in intents if isinstance(i, WriteStatus))
    assert write.status.phase is Phase.RUNNING
    assert write.status.backend_ref is not None and write.status.backend_ref.display == "hpc/14"
    assert any(isinstance(i, Emit) and i.reason == "Running" for i in intents)


def test_just_submitted_job_is_recorded_as_queued() -> None:
    (write,) = plan(make_step(), view(submitted=99))  # no Event: a step's Events are its start and end
    assert isinstance(write, WriteStatus)
    assert write.status.phase is Phase.QUEUED and write.status.backend_ref is not None
    assert write.status.backend_ref.job_id == 99


def test_unchanged_status_is_not_written_again() -> None:
    first = plan(make_step(), view(JOBS[14]))
    status = next(i for i in first if isinstance(i, WriteStatus)).status.model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    assert plan(make_step(status=status), view(JOBS[14])) == []


@pytest.mark.parametrize(
    ("job_id", "phase", "reason", "exit_code"),
    [
        (10, Phase.SUCCEEDED, None, 0),
        (11, Phase.FAILED, "NonZeroExitCode", 3),
        (12, Phase.FAILED, "JobLaunchFailure", None),
        (16, Phase.QUEUED, "Resources", None),
        (17, Phase.QUEUED, "JobHeldUser", None),
    ],
)
def test_real_slurm_outcomes_map_to_phases(
    job_id: int, phase: Phase, reason: str | None, exit_code: int | None
) -> None:
    job = JOBS[job_id]
    outcome = map_slurm_job(job, "hpc")
    assert (outcome.phase, outcome.reason) == (phase, reason)
    write = next(i for i in plan(make_step(), view(job, tail="boom\n")) if isinstance(i, WriteStatus))
    assert write.status.exit_code == exit_code
    assert write.status.log_tail == ("boom\n" if phase is Phase.FAILED else None)
    finished = {c.type: c.status.value for c in write.status.conditions}["Finished"]
    assert finished == ("True" if phase in (Phase.SUCCEEDED, Phase.FAILED) else "False")
    assert all(c.observed_generation == 1 for c in write.status.conditions)


def test_timeout_is_reported_as_timeout() -> None:
    timed_out = replace(JOBS[9], state=JobState.TIMEOUT, exit_code=0)
    outcome = map_slurm_job(timed_out, "hpc")
    assert (outcome.phase, outcome.reason) == (Phase.FAILED, "TIMEOUT")
    assert "time limit of 1 min" in outcome.message


def test_deleting_a_running_step_cancels_then_releases_it() -> None:
    intents = plan(make_step(deleting=True), view(JOBS[14]))
    assert intents[0] == CancelSlurmJob("hpc", 14, "alice")
    assert isinstance(intents[-1], RemoveFinalizer)


def test_deleting_a_finished_step_only_releases_it() -> None:
    assert plan(make_step(deleting=True), view(JOBS[10])) == [RemoveFinalizer()]


def test_unmapped_namespace_and_unknown_cluster_are_refused_without_submitting() -> None:
    for step, v, reason in (
        (make_step(namespace="team-z"), view(), "NoUserMapping"),
        (make_step(), view(cluster=None), "UnknownSlurmCluster"),
    ):
        intents = plan(step, v)
        assert not any(isinstance(i, SubmitSlurmJob) for i in intents)
        write = next(i for i in intents if isinstance(i, WriteStatus))
        assert (write.status.phase, write.status.reason) == (Phase.FAILED, reason)
        assert any(isinstance(i, Emit) and i.type == "Warning" for i in intents)


def test_finished_steps_are_left_alone() -> None:
    done = make_step(status={"phase": "Succeeded"})
    assert plan(done, view()) == []


def test_status_patch_deletes_fields_the_new_status_no_longer_has() -> None:
    from converged_bridge.reconcile.status import build_status_patch

    queued = next(i for i in plan(make_step(), view(JOBS[16])) if isinstance(i, WriteStatus)).status
    stored = queued.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert stored["reason"] == "Resources"
    done = next(i for i in plan(make_step(status=stored), view(JOBS[10])) if isinstance(i, WriteStatus))
    patch = build_status_patch(stored, done.status)
    assert patch["reason"] is None and patch["phase"] == "Succeeded"


# --- pacing: a waiting step's new reason alone is written at most once per refresh interval ---
REFRESH = timedelta(seconds=30)
QUEUED_RESOURCES = JOBS[16]  # PENDING (Resources)
QUEUED_PRIORITY = replace(QUEUED_RESOURCES, reason="Priority")  # what Slurm says of it a cycle later


def written(job: SlurmJob) -> dict[str, Any]:
    """The stored status after the controller wrote what `job` says, at NOW."""
    intents = plan(make_step(), view(job))
    status = next(i for i in intents if isinstance(i, WriteStatus)).status
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def paced(job: SlurmJob, after: float) -> SlurmView:
    """The view `after` seconds past the status write at NOW."""
    timing = StatusTiming(now=NOW + timedelta(seconds=after), written_at=NOW, pending_reason_refresh=REFRESH)
    return replace(view(job), timing=timing)


def test_a_new_pending_reason_alone_waits_for_the_refresh_interval() -> None:
    step = make_step(status=written(QUEUED_RESOURCES))
    assert plan(step, paced(QUEUED_PRIORITY, 29)) == []
    (write,) = plan(step, paced(QUEUED_PRIORITY, 30))  # no Event: the phase stays
    assert isinstance(write, WriteStatus)
    assert (write.status.phase, write.status.reason) == (Phase.QUEUED, "Priority")
    # the conditions say Priority now, but none of them transitioned: their times stay those of NOW
    assert {c.last_transition_time for c in write.status.conditions} == {NOW}
    assert all("(Priority)" in c.message for c in write.status.conditions if c.type != "Submitted")


def test_without_pacing_every_new_pending_reason_is_written() -> None:
    step = make_step(status=written(QUEUED_RESOURCES))
    (write,) = plan(step, view(QUEUED_PRIORITY))
    assert isinstance(write, WriteStatus) and write.status.reason == "Priority"


def test_a_start_or_an_end_is_written_at_once_within_the_interval() -> None:
    step = make_step(status=written(QUEUED_RESOURCES))
    running = replace(QUEUED_RESOURCES, state=JobState.RUNNING, reason="", nodes="c1", start_time=NOW)
    done = replace(running, state=JobState.COMPLETED, exit_code=0, end_time=NOW + timedelta(seconds=1))
    for job, phase in ((running, Phase.RUNNING), (done, Phase.SUCCEEDED)):
        write, event = plan(step, paced(job, 1))
        assert isinstance(write, WriteStatus) and write.status.phase is phase
        assert isinstance(event, Emit) and event.reason == phase.value


def test_a_new_backend_ref_or_generation_is_written_at_once_within_the_interval() -> None:
    step = make_step(status=written(QUEUED_RESOURCES))
    requeued_as = replace(QUEUED_PRIORITY, job_id=99)  # another job carries the step's UID now
    (write,) = plan(step, paced(requeued_as, 1))
    assert isinstance(write, WriteStatus)
    assert write.status.backend_ref is not None and write.status.backend_ref.job_id == 99

    edited = make_step(status=written(QUEUED_RESOURCES), generation=2)  # the spec changed since
    (write,) = plan(edited, paced(QUEUED_PRIORITY, 1))
    assert isinstance(write, WriteStatus) and write.status.observed_generation == 2
    assert all(c.observed_generation == 2 for c in write.status.conditions)
