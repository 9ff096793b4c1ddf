"""The plan as a schedule: the routed DAG simulated on the capacity snapshot, its groups and its
estimated CPU/memory/GPU-hours (pure; `converged_bridge.schedule` does the simulating).

A step lasts its estimate from the history of its rule (`converged_bridge.history`: the rule's recent
runs, scaled by input size where that fits), else its declared `runtime` (a limit: the estimate is then
what the run takes if every step uses all of it), or `DEFAULT_RUNTIME_MINUTES` when the rule declares
none; before it runs it holds its resources for its backend's start-up time (the site weights' figures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from converged_bridge.history import Estimate
from converged_bridge.routing import STANDARD_RULES, CapacityView, RuleBook, SiteWeights
from converged_bridge.schedule import (
    GroupMember,
    Need,
    Schedule,
    SimStep,
    StepEstimate,
    StepGroup,
    Usage,
    build_machine,
    build_need,
    build_plan_annotations,
    build_usage,
    plan_groups,
    simulate_schedule,
    sum_usage,
)
from snakemake_executor_plugin_converged.plan import PlanEntry

DEFAULT_RUNTIME_MINUTES = 1


@dataclass(frozen=True)
class PlanSchedule:
    schedule: Schedule
    groups: tuple[StepGroup, ...]
    usage: Mapping[tuple[str, str], Usage]  # estimated, per (backend, target)
    assumed_runtime: tuple[int, ...]  # job ids whose rule declares no runtime
    upstream: Mapping[int, tuple[int, ...]]
    group_names: Mapping[int, str]  # job id -> its group's name
    max_running: int | None = None
    default_runtime_minutes: int = DEFAULT_RUNTIME_MINUTES
    runtime_estimates: Mapping[int, Estimate] = field(default_factory=dict)  # job id -> from history

    def group_of(self, job_id: int) -> str | None:
        return self.group_names.get(job_id)

    def annotations(self, job_ids: Sequence[int], upstream: Sequence[int]) -> dict[str, str]:
        """The plan's annotations for the WorkflowStep of `job_ids` (one job, or a group job's members)."""
        known = [self.schedule.estimates[j] for j in job_ids if j in self.schedule.estimates]
        estimate = (
            StepEstimate(
                min(job_ids),
                min(e.ready for e in known),
                min(e.start for e in known),
                max(e.end for e in known),
            )
            if known
            else None
        )
        return build_plan_annotations(upstream, estimate, self.group_of(min(job_ids)) if job_ids else None)


def plan_schedule(
    entries: Sequence[PlanEntry],
    upstream: Mapping[int, tuple[int, ...]],
    capacity: CapacityView,
    weights: SiteWeights,
    *,
    max_running: int | None = None,
    default_runtime_minutes: int = DEFAULT_RUNTIME_MINUTES,
    rules: RuleBook = STANDARD_RULES,
    estimates: Mapping[int, Estimate] | None = None,
) -> PlanSchedule:
    """Simulate the routed jobs on `capacity` (see the module docstring). Refused jobs are simulated
    without a target, as if they ran; the plan says the run would stop at them. Each backend's pools,
    needs and start-up come from its registered rules. `estimates` (by job id) give the runtimes learnt
    from history; those based on `history` replace the declared ones."""
    learnt = {j: e for j, e in (estimates or {}).items() if e.basis == "history"}
    steps = []
    assumed = []
    for e in entries:
        backend = e.decision.backend
        minutes = e.resources.shape.runtime_minutes
        estimate = learnt.get(e.jobid)
        if minutes is None and estimate is None:
            assumed.append(e.jobid)
        steps.append(
            SimStep(
                job_id=e.jobid,
                target=e.decision.target if backend else None,
                need=build_need(e.resources.shape, backend, rules) if backend else Need(),
                runtime_seconds=estimate.runtime_s
                if estimate
                else 60.0 * (minutes or default_runtime_minutes),
                upstream=upstream.get(e.jobid, ()),
                startup_seconds=rules.rules_for(backend).startup_seconds(weights) if backend else 0.0,
            )
        )
    schedule = simulate_schedule(steps, build_machine(capacity, rules), max_running=max_running)
    groups = plan_groups(
        [GroupMember(e.jobid, e.level, e.rule, *e.shape_key) for e in entries if e.decision.backend]
    )
    usage = sum_usage(
        ((e.backend, e.decision.target), build_usage(e.resources.shape, est.end - est.start))
        for e in entries
        if e.decision.backend and (est := schedule.estimates.get(e.jobid)) is not None
    )
    return PlanSchedule(
        schedule=schedule,
        groups=groups,
        usage=usage,
        assumed_runtime=tuple(sorted(assumed)),
        upstream=dict(upstream),
        group_names={job: g.name for g in groups for job in g.job_ids},
        max_running=max_running,
        default_runtime_minutes=default_runtime_minutes,
        runtime_estimates=learnt,
    )
