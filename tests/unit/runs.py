"""A finished run built the way a real one is: the plan by `plan_schedule`, each WorkflowStep by the
plugin's `build_step_manifest` with the plan's annotations, its status by the controller's
`build_status` (Queued, then Running, then an end), the API server's creationTimestamp added."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from converged_bridge.api.workflowstep import BackendKind, BackendRef, Phase, WorkflowStep
from converged_bridge.history import StepHistoryNotes, build_history_annotations
from converged_bridge.reconcile.status import build_status
from converged_bridge.wire import GROUP_LABEL
from snakemake_executor_plugin_converged.manifest import JobFacts, build_step_manifest
from snakemake_executor_plugin_converged.plan import PlanEntry
from snakemake_executor_plugin_converged.resources import StepResources
from snakemake_executor_plugin_converged.schedule import PlanSchedule
from tests.unit.test_plugin_plan_status_manifest import CHAINS, KUEUE, UPSTREAM, entry, planned

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
IMAGE = StepResources(image="registry.example/step:1")
SEED = [*CHAINS, entry(4, 9, "report", IMAGE, KUEUE)]
SEED_UPSTREAM = {**UPSTREAM, 9: (7, 8)}
# what happened, in seconds from the run's start: created, started, ended (None: did not get there)
SEED_RAN: dict[int, tuple[float, float | None, float | None]] = {
    1: (0, 3, 23),
    2: (0, 4, 24),
    3: (25, 28, 48),
    4: (26, 29, 49),
    5: (50, 53, 73),
    6: (51, 75, 95),  # waited for the one GPU
    7: (75, 78, 98),
    8: (97, 100, 120),
    9: (122, 130, 135),
}


def seed_plan() -> PlanSchedule:
    return planned(SEED, SEED_UPSTREAM)


def at(seconds: float | None) -> datetime | None:
    return None if seconds is None else T0 + timedelta(seconds=seconds)


def finished_step(
    plan: PlanSchedule,
    e: PlanEntry,
    created: float,
    started: float | None,
    ended: float | None,
    *,
    phase: Phase = Phase.SUCCEEDED,
    wildcards: dict[str, str] | None = None,
    group: str | None = None,
    history: StepHistoryNotes | None = None,
    reason: str | None = None,
    exit_code: int = 0,
) -> dict[str, Any]:
    facts = JobFacts(
        namespace="team-a",
        run_id="sm-seed",
        rule=e.rule,
        jobid=e.jobid,
        attempt=1,
        command="true",
        working_dir="/shared/wf",
        wildcards=wildcards
        if wildcards is not None
        else dict([e.wildcards.split("=")] if e.wildcards else []),
        annotations={
            **plan.annotations([e.jobid], plan.upstream.get(e.jobid, ())),
            **(build_history_annotations(history) if history else {}),
        },
    )
    manifest = build_step_manifest(facts, e.resources, e.decision)
    manifest["metadata"]["creationTimestamp"] = (T0 + timedelta(seconds=created)).isoformat()
    if group:
        manifest["metadata"]["labels"][GROUP_LABEL] = group
    step = WorkflowStep.model_validate(manifest)
    ref = (
        BackendRef.for_slurm_job("s", 100 + e.jobid)
        if e.backend == "slurm"
        else BackendRef.for_object(BackendKind.JOB, f"job-{e.jobid}")
    )
    queued = at(created + 1)
    assert queued is not None
    step = step.model_copy(
        update={
            "status": build_status(
                step, phase=Phase.QUEUED, reason="Priority", message="", now=queued, backend_ref=ref
            )
        }
    )
    if started is not None:
        t = at(started)
        assert t is not None
        step = step.model_copy(
            update={
                "status": build_status(
                    step, phase=Phase.RUNNING, reason=None, message="", now=t, start_time=t
                )
            }
        )
    if ended is not None:
        t = at(ended)
        assert t is not None
        status = build_status(
            step, phase=phase, reason=reason, message="", now=t, completion_time=t, exit_code=exit_code
        )
        step = step.model_copy(update={"status": status})
    return step.to_manifest()


def seed_run(**groups: str) -> list[dict[str, Any]]:
    """The seed's chains and a Kueue report step, finished; `groups` labels steps (g1="1,2") with the
    allocation that ran them."""
    plan = seed_plan()
    label = {int(j): name for name, jobs in groups.items() for j in jobs.split(",")}
    return [finished_step(plan, e, *SEED_RAN[e.jobid], group=label.get(e.jobid)) for e in SEED]
