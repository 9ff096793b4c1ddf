"""Groups that run in one allocation: which of the plan's groups get a StepAllocation, how big and how
long, its manifest, and the run's book of them (pure: the executor creates and closes them through the
session).

A plan group (consecutive steps of one shape on one target, `converged_bridge.schedule.groups`) gets an
allocation when at least two of its steps opt in (`--converged-group-allocations`, or the rule's
`converged_group=yes`; `converged_group=no` opts a rule out) and can run in a slot: single-task Job
steps (no MPI, no operator object) whose resources the plan knows (a slot is sized upfront), not part
of one of snakemake's own group jobs (which run as one step already). Its steps then run where the plan
routed the group, in that allocation. It is created when its first step is ready, and closed once its
last step was handed to it: no ready or upcoming step remains. A step of a closed allocation (a retry,
a job the plan did not know) runs alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from converged_bridge.api.meta import ObjectMeta
from converged_bridge.api.stepallocation import SlotResources, StepAllocation, StepAllocationSpec
from converged_bridge.api.workflowstep import Backend, KueuePlacement, Operator, SlurmPlacement
from converged_bridge.routing import RouteDecision
from converged_bridge.schedule import Machine, build_need, count_fit, plan_allocation_minutes, plan_slots
from converged_bridge.wire import RUN_LABEL
from snakemake_executor_plugin_converged.plan import PlanEntry
from snakemake_executor_plugin_converged.resources import StepResources
from snakemake_executor_plugin_converged.schedule import PlanSchedule


@dataclass(frozen=True)
class AllocationPlan:
    name: str  # the StepAllocation's name: `<run id>-<group>`
    group: str
    job_ids: frozenset[int]
    decision: RouteDecision  # where the group runs (the plan's route of its first step)
    resources: StepResources  # one step's (every member has this shape)
    slots: int
    runtime_minutes: int


def groupable(entry: PlanEntry) -> bool:
    """A step that can run in one slot of an allocation."""
    d, r = entry.decision, entry.resources
    one = r.shape.nodes == 1 and r.shape.tasks == 1 and not r.mpi
    return d.backend is not None and d.operator == Operator.JOB and one and not r.pending


def plan_run_allocations(
    entries: Sequence[PlanEntry],
    plan: PlanSchedule,
    machine: Machine,
    *,
    run_id: str,
    opted: Callable[[StepResources], bool],
    idle_seconds: int,
    max_running: int | None = None,
    excluded: frozenset[int] = frozenset(),
    time_limits: Mapping[str, int] | None = None,
) -> tuple[AllocationPlan, ...]:
    """The run's allocations, one per plan group with at least two steps that opt in (module docstring).
    `excluded`: job ids snakemake runs in its own group jobs; `time_limits`: target -> its max minutes."""
    by_id = {e.jobid: e for e in entries}
    out = []
    for group in plan.groups:
        members = [
            by_id[j]
            for j in group.job_ids
            if j in by_id and j not in excluded and groupable(by_id[j]) and opted(by_id[j].resources)
        ]
        if len(members) < 2:
            continue
        first = members[0]
        backend = first.decision.backend
        assert backend is not None  # groupable
        estimates = [plan.schedule.estimates[e.jobid] for e in members if e.jobid in plan.schedule.estimates]
        pool = machine.pools.get(machine.pool_of(first.decision.target) or "")
        slots = plan_slots(
            estimates, count_fit(pool, build_need(first.resources.shape, backend)), max_running
        )
        runtimes = [
            60.0 * (e.resources.shape.runtime_minutes or plan.default_runtime_minutes) for e in members
        ]
        limit = (time_limits or {}).get(first.decision.target)
        minutes = plan_allocation_minutes(estimates, runtimes, idle_seconds, limit)
        out.append(
            AllocationPlan(
                name=f"{run_id}-{group.name}",
                group=group.name,
                job_ids=frozenset(e.jobid for e in members),
                decision=first.decision,
                resources=first.resources,
                slots=slots,
                runtime_minutes=minutes,
            )
        )
    return tuple(out)


def build_allocation_manifest(
    plan: AllocationPlan,
    *,
    namespace: str,
    run_id: str,
    working_dir: str,
    idle_seconds: int,
    labels: Mapping[str, str] | None = None,
    warm: bool = True,
) -> dict[str, Any]:
    """The StepAllocation for `plan` (its steps' labels: the run, and the controller's when embedded)."""
    d, r = plan.decision, plan.resources
    backend = d.backend
    assert backend is not None
    shape = r.shape
    alloc = StepAllocation(
        metadata=ObjectMeta(
            name=plan.name, namespace=namespace, labels={RUN_LABEL: run_id, **(labels or {})}
        ),
        spec=StepAllocationSpec(
            run_id=run_id,
            group=plan.group,
            backend=backend,
            image=r.image_for(backend),
            working_dir=working_dir,
            resources=SlotResources(
                cpus=shape.cpus, mem_mib=shape.mem_mib, gpus=shape.gpus, gpu_model=shape.gpu_model
            ),
            slots=plan.slots,
            runtime_minutes=plan.runtime_minutes,
            idle_seconds=idle_seconds,
            warm=warm,
            slurm=SlurmPlacement(
                cluster=d.slurm_cluster, partition=d.slurm_partition, account=r.slurm_account, qos=r.qos
            )
            if backend == Backend.SLURM
            else None,
            kueue=KueuePlacement(local_queue=(d.local_queue or "").rpartition("/")[2] or None)
            if backend == Backend.KUEUE
            else None,
        ),
    )
    return alloc.to_manifest()


@dataclass
class AllocationBook:
    """The run's allocations as the executor uses them: which job runs in which, which exist, which are
    closed, and how many steps each was given."""

    plans: Sequence[AllocationPlan]
    _by_job: dict[int, AllocationPlan] = field(init=False)
    _remaining: dict[str, set[int]] = field(init=False)
    given: dict[str, int] = field(init=False)
    created: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._by_job = {j: p for p in self.plans for j in p.job_ids}
        self._remaining = {p.name: set(p.job_ids) for p in self.plans}
        self.given = {p.name: 0 for p in self.plans}

    def allocation_for(self, job_id: int) -> AllocationPlan | None:
        """The allocation job `job_id` runs in, if it has one still open."""
        plan = self._by_job.get(job_id)
        return plan if plan is not None and plan.name not in self.closed else None

    def give(self, plan: AllocationPlan, job_id: int) -> int | None:
        """Job `job_id`'s step went to `plan`'s allocation; the count of its steps when that was its last
        member (close it now with that count), else None."""
        self.given[plan.name] += 1
        remaining = self._remaining[plan.name]
        remaining.discard(job_id)
        if remaining:
            return None
        self.closed.add(plan.name)
        return self.given[plan.name]

    def still_open(self) -> list[tuple[str, int]]:
        """Allocations created and not closed yet, with their counts (to close when the run ends)."""
        return [(name, self.given[name]) for name in sorted(self.created - self.closed)]

    def close_all(self) -> list[tuple[str, int]]:
        found = self.still_open()
        self.closed |= {name for name, _ in found}
        return found
