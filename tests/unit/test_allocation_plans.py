"""The pure decisions for grouped steps and for StepAllocations: what the agent recorded in, intents out."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from converged_bridge.allocation.handover import Handover, StepResult, parse_step_result
from converged_bridge.allocation.intents import CancelHandedStep, CloseAllocation, HandOverStep
from converged_bridge.allocation.paths import AllocationPaths, build_allocation_paths
from converged_bridge.allocation.plan import (
    AllocationView,
    StepSummary,
    plan_allocation,
    plan_allocation_cleanup,
)
from converged_bridge.allocation.steps import (
    AllocationFacts,
    AllocationJob,
    GroupedStepView,
    check_step_fits,
    plan_grouped_cleanup,
    plan_grouped_step,
)
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import BackendRef, Phase, WorkflowStep
from converged_bridge.errors import InvalidStep
from converged_bridge.reconcile.intents import BackendIntent, Emit, Intent, WriteAllocationStatus, WriteStatus
from converged_bridge.reconcile.status import StatusTiming

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
STEP_UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
ALLOC_UID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
PATHS = AllocationPaths("/run/.converged/spool/a", "/run/.converged/allocations/a", "/run/.converged/logs")
EMPTY = Handover()
JOB = AllocationJob(Phase.RUNNING, None, "running on c1", BackendRef.for_slurm_job("hpc", 42))


def step(**labels: str) -> WorkflowStep:
    return WorkflowStep.model_validate(
        {
            "metadata": {
                "name": "sm-1-prep-3",
                "namespace": "team-a",
                "uid": STEP_UID,
                "generation": 1,
                "creationTimestamp": T0.isoformat(),
                "labels": {"converged.dev/group": "sm-1-g1", **labels},
            },
            "spec": {
                "workflow": {"runId": "sm-1", "rule": "prep", "jobId": 3},
                "backend": "slurm",
                "command": ["/bin/sh", "-c", "echo hi"],
                "image": "/img.sif",
                "workingDir": "/run",
                "resources": {"cpus": 2, "memMiB": 954},
                "slurm": {"cluster": "hpc", "partition": "cpu"},
            },
        }
    )


def allocation(**spec: Any) -> StepAllocation:
    return StepAllocation.model_validate(
        {
            "metadata": {"name": "sm-1-g1", "namespace": "team-a", "uid": ALLOC_UID, "generation": 1},
            "spec": {
                "runId": "sm-1",
                "group": "g1",
                "backend": "slurm",
                "image": "/img.sif",
                "workingDir": "/run",
                "resources": {"cpus": 2, "memMiB": 954},
                "slots": 2,
                "runtimeMinutes": 30,
                "slurm": {"cluster": "hpc", "partition": "cpu"},
                **spec,
            },
        }
    )


def facts(
    handover: Handover = EMPTY, job: AllocationJob | None = JOB, ended: bool = False
) -> AllocationFacts:
    return AllocationFacts("sm-1-g1", PATHS, job, ended, handover)


def view(alloc: AllocationFacts | None, script: str | None = "#!/bin/bash\n", **kw: Any) -> GroupedStepView:
    return GroupedStepView(
        alloc, script, None, PATHS.step_log(STEP_UID), StatusTiming(now=T0 + timedelta(seconds=5)), **kw
    )


def written(intents: list[Intent]) -> tuple[Phase | None, str | None]:
    (status,) = [i.status for i in intents if isinstance(i, WriteStatus)]
    return status.phase, status.reason


def test_a_new_step_is_handed_over_once_and_waits_for_a_slot() -> None:
    intents = plan_grouped_step(step(), view(facts()))
    assert intents[0] == HandOverStep(PATHS, STEP_UID, "#!/bin/bash\n")
    assert written(intents) == (Phase.QUEUED, "HandedOver")
    status = next(i.status for i in intents if isinstance(i, WriteStatus))
    assert status.backend_ref is not None and status.backend_ref.allocation == "sm-1-g1"
    assert status.backend_ref.display == "hpc/42"
    handed = plan_grouped_step(step(), view(facts(Handover(handed=frozenset({STEP_UID})))))
    assert not any(isinstance(i, HandOverStep) for i in handed)
    assert written(handed) == (Phase.QUEUED, "WaitingForSlot")


def test_the_agents_records_become_the_steps_phase_times_and_exit_code() -> None:
    started, ended = T0 + timedelta(seconds=7), T0 + timedelta(seconds=9)
    claimed = Handover(
        handed=frozenset({STEP_UID}), claimed=frozenset({STEP_UID}), started={STEP_UID: started}
    )
    running = plan_grouped_step(step(), view(facts(claimed)))
    assert written(running) == (Phase.RUNNING, None)
    ok = replace(claimed, done={STEP_UID: StepResult(0, started, ended)})
    (status,) = [i.status for i in plan_grouped_step(step(), view(facts(ok))) if isinstance(i, WriteStatus)]
    assert (status.phase, status.exit_code, status.start_time, status.completion_time) == (
        Phase.SUCCEEDED,
        0,
        started,
        ended,
    )
    assert status.log_path == PATHS.step_log(STEP_UID)
    bad = replace(claimed, done={STEP_UID: StepResult(3, started, ended)})
    failed = plan_grouped_step(step(), view(facts(bad), log_tail="Traceback ...\n"))
    status = next(i.status for i in failed if isinstance(i, WriteStatus))
    assert (status.phase, status.reason, status.exit_code, status.log_tail) == (
        Phase.FAILED,
        "NonZeroExitCode",
        3,
        "Traceback ...\n",
    )


def test_an_allocation_that_ended_fails_the_steps_it_did_not_finish() -> None:
    gone = replace(JOB, phase=Phase.FAILED, reason="TIMEOUT")
    for handover in (
        Handover(),
        Handover(handed=frozenset({STEP_UID})),
        Handover(handed=frozenset({STEP_UID}), claimed=frozenset({STEP_UID})),
    ):
        intents = plan_grouped_step(step(), view(facts(handover, job=gone, ended=True)))
        assert written(intents) == (Phase.FAILED, "AllocationEnded")
        assert not any(isinstance(i, HandOverStep) for i in intents)


def test_a_step_the_agent_stopped_on_its_way_out_failed_because_the_allocation_ended() -> None:
    started, ended = T0 + timedelta(seconds=7), T0 + timedelta(seconds=9)
    stopped = Handover(
        handed=frozenset({STEP_UID}),
        claimed=frozenset({STEP_UID}),
        done={STEP_UID: StepResult(143, started, ended, stopped=True)},
    )
    intents = plan_grouped_step(step(), view(facts(stopped)))
    assert written(intents) == (Phase.FAILED, "AllocationEnded")
    status = next(i.status for i in intents if isinstance(i, WriteStatus))
    assert (status.exit_code, status.completion_time) == (143, ended)


def test_a_step_without_its_allocation_waits_then_fails() -> None:
    assert written(plan_grouped_step(step(), view(None))) == (Phase.PENDING, "WaitingForAllocation")
    late = GroupedStepView(None, None, None, "", StatusTiming(now=T0 + timedelta(minutes=5)))
    assert written(plan_grouped_step(step(), late)) == (Phase.FAILED, "AllocationNotFound")


def test_deleting_a_grouped_step_cancels_it_alone() -> None:
    handed = Handover(handed=frozenset({STEP_UID}))
    cleanup = plan_grouped_cleanup(step(), view(facts(handed)))
    assert cleanup is not None and CancelHandedStep(PATHS, STEP_UID) in cleanup
    marked = replace(handed, cancelled=frozenset({STEP_UID}))
    assert plan_grouped_cleanup(step(), view(facts(marked))) == []  # marked before the agent claimed it
    claimed = replace(marked, claimed=frozenset({STEP_UID}))
    assert plan_grouped_cleanup(step(), view(facts(claimed))) is None  # the agent stops it: wait
    stopped = replace(claimed, done={STEP_UID: StepResult(143, T0, T0)})
    assert plan_grouped_cleanup(step(), view(facts(stopped))) == []
    assert plan_grouped_cleanup(step(), view(facts(Handover()))) == []  # never handed over
    assert plan_grouped_cleanup(step(), view(facts(claimed, ended=True))) == []


def test_a_step_that_does_not_fit_a_slot_is_refused() -> None:
    assert check_step_fits(step(), allocation()) is None
    small = allocation(resources={"cpus": 1})
    assert "needs 2 cpus" in (check_step_fits(step(), small) or "")
    other = allocation(backend="kueue", slurm=None)
    assert "runs on slurm" in (check_step_fits(step(), other) or "")


def alloc_view(job: AllocationJob | None = JOB, handover: Handover = EMPTY, **kw: Any) -> AllocationView:
    defaults: dict[str, Any] = {
        "paths": PATHS,
        "job": job,
        "submitted": None,
        "submit": None,
        "refusal": None,
        "cancel": None,
        "steps": (),
        "handover": handover,
        "target": "hpc/cpu",
        "log_path": None,
        "timing": StatusTiming(now=T0),
    }
    return AllocationView(**{**defaults, **kw})


class Submit(BackendIntent):
    pass


def test_an_allocation_is_submitted_once_then_follows_its_job() -> None:
    submit = Submit()
    assert plan_allocation(allocation(), alloc_view(job=None, submit=submit)) == [submit]
    queued = plan_allocation(
        allocation(), alloc_view(job=None, submitted=BackendRef.for_slurm_job("hpc", 42))
    )
    (status,) = [i.status for i in queued if isinstance(i, WriteAllocationStatus)]
    assert (status.phase, status.reason, status.target) == (Phase.QUEUED, "Submitted", "hpc/cpu")
    running = plan_allocation(allocation(), alloc_view(steps=[StepSummary(STEP_UID, Phase.RUNNING)]))
    (status,) = [i.status for i in running if isinstance(i, WriteAllocationStatus)]
    assert status.phase == Phase.RUNNING and status.steps is not None and status.steps.running == 1
    assert any(isinstance(i, Emit) and i.reason == "Running" for i in running)
    refused = plan_allocation(allocation(), alloc_view(job=None, refusal=("NoUserMapping", "no user")))
    assert any(isinstance(i, WriteAllocationStatus) and i.status.phase == Phase.FAILED for i in refused)


def test_the_spool_closes_when_the_workflow_closed_it_and_every_step_is_handed_over() -> None:
    other = str(uuid.uuid4())
    steps = [StepSummary(STEP_UID, Phase.SUCCEEDED), StepSummary(other, Phase.QUEUED)]
    handed = Handover(handed=frozenset({STEP_UID, other}))
    closed = allocation(closed=True, expectedSteps=2)

    def closes(alloc: StepAllocation, v: AllocationView) -> bool:
        return CloseAllocation(PATHS) in plan_allocation(alloc, v)

    assert closes(closed, alloc_view(steps=steps, handover=handed))
    assert not closes(allocation(), alloc_view(steps=steps, handover=handed))  # not closed by the workflow
    assert not closes(closed, alloc_view(steps=steps, handover=Handover(handed=frozenset({STEP_UID}))))
    three = allocation(closed=True, expectedSteps=3)  # one step not listed yet
    assert not closes(three, alloc_view(steps=steps, handover=handed))
    assert not closes(closed, alloc_view(steps=steps, handover=replace(handed, closed=True)))  # done already


def test_a_deleted_allocation_closes_its_spool_and_ends_its_job() -> None:
    cancel = Submit()
    cleanup = plan_allocation_cleanup(allocation(), alloc_view(cancel=cancel))
    assert cleanup[0] == CloseAllocation(PATHS) and cancel in cleanup
    ended = replace(JOB, phase=Phase.SUCCEEDED)
    assert (
        plan_allocation_cleanup(
            allocation(), alloc_view(job=ended, handover=Handover(closed=True), cancel=cancel)
        )
        == []
    )


def test_a_deleted_allocation_that_never_had_a_job_lets_go_at_once() -> None:
    """No job, no agent to tell: its spool is not touched (it may not even be writable)."""
    assert plan_allocation_cleanup(allocation(), alloc_view(job=None, cancel=Submit())) == []
    taken = BackendRef.for_slurm_job("hpc", 42)  # submitted, not listed yet: its agent may start
    assert plan_allocation_cleanup(allocation(), alloc_view(job=None, submitted=taken))[0] == CloseAllocation(
        PATHS
    )


def test_paths_are_per_allocation_and_checked() -> None:
    paths = build_allocation_paths(allocation())
    assert paths.spool == f"/run/.converged/spool/sm-1-g1-{ALLOC_UID[:8]}"
    assert paths.state == f"/run/.converged/allocations/sm-1-g1-{ALLOC_UID[:8]}"
    own = build_allocation_paths(allocation(), spool_root="/srv/spool")
    assert own.spool == f"/srv/spool/team-a/{ALLOC_UID}" and own.state == paths.state
    try:
        build_allocation_paths(allocation(workingDir="/run dir"))
    except InvalidStep as e:
        assert "spec.workingDir" in str(e)
    else:
        raise AssertionError("a path with a space must be refused")


def test_step_results_parse_or_are_left_out() -> None:
    assert parse_step_result("0 1764488763.5 1764488765.25\n") == StepResult(
        0, datetime.fromtimestamp(1764488763.5, UTC), datetime.fromtimestamp(1764488765.25, UTC)
    )
    assert parse_step_result("cancelled 1764488763.5") == StepResult(
        None, None, datetime.fromtimestamp(1764488763.5, UTC)
    )
    stopped = parse_step_result("143 1764488763.5 1764488765.25 stopped")
    assert stopped is not None and stopped.stopped and stopped.exit_code == 143
    for bad in ("", "0 x y", "300 1 2", "-1 1 2", "0 1", "0 1 2 3"):
        assert parse_step_result(bad) is None
