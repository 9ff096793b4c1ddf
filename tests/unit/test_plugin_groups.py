"""Groups that run in one allocation, on the plugin's side: which plan groups get a StepAllocation, how big
and how long, its manifest, the run's book of them; and the seed's example planned by the real snakemake."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest
from snakemake_interface_common.exceptions import WorkflowError

from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import Backend, Resources
from converged_bridge.routing import CapacityView, Decision, RouteDecision, SiteWeights
from converged_bridge.schedule import (
    Machine,
    Need,
    Pool,
    Slot,
    StepEstimate,
    count_concurrent,
    count_fit,
    plan_allocation_minutes,
    plan_slots,
)
from snakemake_executor_plugin_converged.groups import (
    AllocationBook,
    build_allocation_manifest,
    plan_run_allocations,
)
from snakemake_executor_plugin_converged.plan import PlanEntry
from snakemake_executor_plugin_converged.resources import StepResources, parse_job_resources
from snakemake_executor_plugin_converged.schedule import plan_schedule
from snakemake_executor_plugin_converged.session import RunSession
from tests.unit.clocks import ManualClock
from tests.unit.test_plugin_plan_seed import plan

CPU = RouteDecision(
    Backend.SLURM,
    Decision.EXPLICIT,
    "pinned",
    slurm_cluster="hpc",
    slurm_partition="cpu",
    expected_wait_seconds=0,
    target="hpc/cpu",
)
MACHINE = Machine(
    pools={"slurm:hpc/cpu": Pool("hpc/cpu", (Slot(cpus=4, mem_mib=7900), Slot(cpus=4, mem_mib=7900)))},
    targets={"hpc/cpu": "slurm:hpc/cpu"},
)


def entry(jobid: int, level: int, group: bool | None = None, cpus: int = 1, runtime: int = 2) -> PlanEntry:
    shape = Resources(cpus=cpus, mem_mib=500, runtime_minutes=runtime)
    resources = StepResources(shape=shape, image="/step.sif", group=group)
    return PlanEntry(level, jobid, "map", "", resources, CPU)


def planned(
    entries: list[PlanEntry], run_default: bool = True, **kw: object
) -> list[tuple[str, int, int, int]]:
    upstream = {e.jobid: tuple(u.jobid for u in entries if u.level < e.level) for e in entries}
    schedule = plan_schedule(entries, upstream, CapacityView(), SiteWeights())
    plans = plan_run_allocations(
        entries,
        schedule,
        MACHINE,
        run_id="sm-1",
        opted=lambda r: r.group if r.group is not None else run_default,
        idle_seconds=60,
        **kw,  # type: ignore[arg-type]
    )
    return [(p.name, len(p.job_ids), p.slots, p.runtime_minutes) for p in plans]


def test_a_group_of_opted_in_steps_gets_one_allocation_of_its_concurrency() -> None:
    fan = [entry(j, 0) for j in range(1, 7)]  # six at once, on unknown capacity
    assert planned(fan) == [("sm-1-g1", 6, 4, 13)]  # a node holds 4 of them; 6 x 2 min + 1 min idle
    assert planned(fan, run_default=False) == []
    assert planned([*fan[:3], *(entry(j, 0, group=True) for j in (7, 8))], run_default=False) == [
        ("sm-1-g1", 2, 2, 5)
    ]
    assert planned(fan, max_running=2) == [("sm-1-g1", 6, 2, 13)]
    assert planned(fan, excluded=frozenset(range(2, 7))) == []  # one left: it runs alone
    assert planned(fan, time_limits={"hpc/cpu": 10}) == [("sm-1-g1", 6, 4, 10)]


def test_steps_whose_resources_are_not_known_yet_run_alone() -> None:
    fan = [entry(j, 0) for j in range(1, 4)]
    unknown = [replace(e, resources=replace(e.resources, pending=("mem_mb",))) for e in fan[1:]]
    assert planned([fan[0], *unknown]) == []  # a slot is sized upfront: one known step left
    assert planned([*fan, *(replace(u, jobid=u.jobid + 10) for u in unknown)]) == [("sm-1-g1", 3, 3, 7)]


def test_the_manifest_is_a_valid_step_allocation_with_the_runs_labels() -> None:
    (alloc_plan,) = plan_run_allocations(
        [entry(1, 0), entry(2, 0)],
        plan_schedule([entry(1, 0), entry(2, 0)], {}, CapacityView(), SiteWeights()),
        MACHINE,
        run_id="sm-1",
        opted=lambda r: True,
        idle_seconds=60,
    )
    manifest = build_allocation_manifest(
        alloc_plan,
        namespace="team-a",
        run_id="sm-1",
        working_dir="/shared/run",
        idle_seconds=60,
        labels={"x": "y"},
    )
    alloc = StepAllocation.model_validate(manifest)
    assert alloc.metadata.labels == {"converged.dev/run": "sm-1", "x": "y"}
    spec = alloc.spec
    assert (spec.backend, spec.slots, spec.group, spec.image, spec.idle_seconds) == (
        Backend.SLURM,
        2,
        "g1",
        "/step.sif",
        60,
    )
    assert spec.slurm is not None and (spec.slurm.cluster, spec.slurm.partition) == ("hpc", "cpu")
    assert (spec.resources.cpus, spec.resources.mem_mib) == (1, 500)


def test_the_book_closes_an_allocation_after_its_last_step_and_runs_later_ones_alone() -> None:
    entries = [entry(1, 0), entry(2, 0), entry(3, 1)]
    (alloc_plan,) = plan_run_allocations(
        entries,
        plan_schedule(entries, {3: (1, 2)}, CapacityView(), SiteWeights()),
        MACHINE,
        run_id="sm-1",
        opted=lambda r: True,
        idle_seconds=60,
    )
    book = AllocationBook([alloc_plan])
    assert book.allocation_for(1) is alloc_plan and book.allocation_for(9) is None
    book.created.add(alloc_plan.name)
    assert book.give(alloc_plan, 1) is None and book.give(alloc_plan, 2) is None
    assert book.still_open() == [("sm-1-g1", 2)]
    assert book.give(alloc_plan, 3) == 3  # the last member: close it with 3 steps
    assert book.allocation_for(3) is None  # a retry of job 3 runs alone
    assert book.close_all() == []


def test_converged_group_is_a_yes_or_no() -> None:
    assert parse_job_resources("r", {"converged_group": "yes"}, threads=1).group is True
    assert parse_job_resources("r", {"converged_group": False}, threads=1).group is False
    assert parse_job_resources("r", {}, threads=1).group is None
    with pytest.raises(WorkflowError, match="converged_group='maybe': must be yes or no"):
        parse_job_resources("r", {"converged_group": "maybe"}, threads=1)


def test_slots_and_time_limits_from_the_schedule() -> None:
    estimates = [StepEstimate(1, 0, 0, 60), StepEstimate(2, 0, 0, 60), StepEstimate(3, 0, 60, 120)]
    assert count_concurrent(estimates) == 2  # 3 starts as 1 and 2 end
    gpu_node = Pool("g", (Slot(cpus=4, mem_mib=7900, gpus={"a100": 2}),))
    assert count_fit(gpu_node, Need(cpus=2, mem_mib=954, gpus=1, gpu_model="a100")) == 2
    assert count_fit(gpu_node, Need(cpus=1, gpus=1, gpu_model="h100")) == 0
    assert count_fit(None, Need()) is None
    assert plan_slots(estimates, fit=None) == 2 and plan_slots(estimates, fit=1) == 1
    assert plan_allocation_minutes(estimates, [60, 60, 60], idle_seconds=60) == 4
    assert plan_allocation_minutes(estimates, [600], idle_seconds=60, limit_minutes=5) == 5


def test_the_seed_chains_run_in_three_allocations_of_four_two_and_two_steps(tmp_path: object) -> None:
    lines = plan(tmp_path, "-j", "10", "--converged-group-allocations")  # type: ignore[arg-type]
    allocations = [line.strip() for line in lines if line.strip().startswith("-> StepAllocation")]
    assert allocations == [
        "-> StepAllocation sm-seed-g1: 4 steps, 2 at once, time limit 15 min",
        "-> StepAllocation sm-seed-g2: 2 steps, 2 at once, time limit 15 min",
        "-> StepAllocation sm-seed-g3: 2 steps, 2 at once, time limit 7 min",
    ]
    assert not any("StepAllocation" in line for line in plan(tmp_path, "-j", "10"))  # type: ignore[arg-type]


class ListedAllocations:
    """The run's StepAllocations as successive LISTs show them (our own edge); each LIST takes 20 s."""

    def __init__(self, phases: list[str], clock: ManualClock) -> None:
        self.phases, self.clock, self.calls = phases, clock, 0

    def list_run_allocations(self, namespace: str, run_id: str) -> list[dict[str, Any]]:
        phase = self.phases[min(self.calls, len(self.phases) - 1)]
        self.calls += 1
        self.clock.advance(20)
        return [{"metadata": {"name": "sm-1-g1"}, "status": {"phase": phase}}]


def test_an_embedded_run_waits_for_its_allocations_to_end_before_its_controller_stops() -> None:
    clock = ManualClock()
    listed = ListedAllocations(["Running", "Succeeded"], clock)
    session = RunSession(
        cast(Any, None),
        allocations=cast(Any, listed),
        namespace="team-a",
        run_id="sm-1",
        clock=clock.monotonic,
    )
    assert session.wait_allocations_finished({"sm-1-g1"}, 60) == [] and listed.calls == 2
    stuck = ListedAllocations(["Running"], clock)
    session.allocations = cast(Any, stuck)
    assert session.wait_allocations_finished({"sm-1-g1"}, 30) == ["sm-1-g1"] and stuck.calls == 2
