"""Backends are reached only through their registration: a third backend, registered here in the test
alone, is routed, charged, batched and planned with no change to the router or the schedule; a backend
nobody registered is an error that names the registered ones, never another backend's branch."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import cast

import pytest

from converged_bridge.api.workflowstep import Backend, Operator, Resources, WorkflowStep
from converged_bridge.routing import (
    STANDARD_RULES,
    CapacityView,
    Decision,
    RouteDecision,
    SiteWeights,
    SlurmClusterView,
    SlurmPartitionView,
    StepRequest,
    UnknownBackend,
    charge,
    route,
    route_batch,
)
from converged_bridge.routing.candidates import Candidate, Refusal
from converged_bridge.routing.pools import Need, Pool, Slot
from converged_bridge.schedule import SimStep, build_machine, build_need, simulate_schedule
from snakemake_executor_plugin_converged.plan import PlanEntry
from snakemake_executor_plugin_converged.resources import StepResources
from snakemake_executor_plugin_converged.schedule import plan_schedule


class ThirdBackend(StrEnum):
    """A backend name the API's enum does not hold (a real third backend adds its value there)."""

    CONDOR = "condor"


CONDOR = cast(Backend, ThirdBackend.CONDOR)


@dataclass(frozen=True)
class CondorPoolView:
    """The fake backend's capacity, as its own capacity reader would put it into the snapshot."""

    name: str
    cpus_total: int
    cpus_idle: int
    pending: int = 0


class CondorRules:
    """A third backend's whole routing side: one pool of CPUs, no GPUs, a one-second start."""

    backend = CONDOR
    targets_named = "Condor pool"

    def candidates(
        self,
        request: StepRequest,
        capacity: CapacityView,
        weights: SiteWeights,
        out: list[Candidate],
        refusals: list[Refusal],
    ) -> None:
        pool = cast(CondorPoolView | None, capacity.others.get("condor"))
        if pool is None:
            refusals.append(("condor", "no pool", ()))
            return
        if request.shape.gpus:
            refusals.append((f"condor {pool.name}", "has no GPUs", ()))
            return
        wait = 1.0 + self.wait(request, pool, weights)
        out.append(((wait, False, True, pool.name), CONDOR, pool, None, wait, Operator.JOB))

    @staticmethod
    def wait(request: StepRequest, pool: CondorPoolView, weights: SiteWeights) -> float:
        fits = request.shape.cpus <= pool.cpus_idle and pool.pending == 0
        return 0.0 if fits else (pool.pending + 1) * weights.mean_runtime_seconds

    def startup_seconds(self, weights: SiteWeights) -> float:
        return 1.0

    def names_target(self, request: StepRequest) -> bool:
        return False

    def target(self, candidate: Candidate) -> Hashable:
        return cast(CondorPoolView, candidate[2]).name

    def summary(self, request: StepRequest, candidate: Candidate, weights: SiteWeights) -> str:
        pool = cast(CondorPoolView, candidate[2])
        return f"condor {pool.name}: {pool.cpus_idle}/{pool.cpus_total} CPUs idle"

    def decide(
        self, request: StepRequest, candidate: Candidate, decision: Decision, reason: str
    ) -> RouteDecision:
        pool = cast(CondorPoolView, candidate[2])
        return RouteDecision(
            backend=CONDOR,
            decision=decision,
            reason=reason,
            expected_wait_seconds=candidate[4],
            target=f"condor/{pool.name}",
        )

    def step_target(self, step: WorkflowStep) -> str:
        return "condor/main"

    def charge(
        self, capacity: CapacityView, request: StepRequest, decision: RouteDecision, count: int
    ) -> CapacityView:
        pool = cast(CondorPoolView, capacity.others["condor"])
        return replace(capacity, others={**capacity.others, "condor": charged(pool, request, count)})

    def ledger(self, capacity: CapacityView, weights: SiteWeights) -> CondorLedger:
        return CondorLedger(cast(CondorPoolView | None, capacity.others.get("condor")), weights)

    def pools(self, capacity: CapacityView) -> Iterator[tuple[str, Pool, tuple[str, ...]]]:
        pool = cast(CondorPoolView | None, capacity.others.get("condor"))
        if pool is not None:
            yield (
                f"condor:{pool.name}",
                Pool(f"Condor {pool.name}", (Slot(cpus=pool.cpus_total),)),
                (f"condor/{pool.name}",),
            )

    def need(self, shape: Resources) -> Need:
        return Need(parts=1, cpus=shape.cpus * shape.tasks)


def charged(pool: CondorPoolView, request: StepRequest, count: int) -> CondorPoolView:
    started = min(count, pool.cpus_idle // request.shape.cpus)
    return replace(
        pool, cpus_idle=pool.cpus_idle - started * request.shape.cpus, pending=pool.pending + count - started
    )


class CondorLedger:
    def __init__(self, pool: CondorPoolView | None, weights: SiteWeights) -> None:
        self.pool, self.weights = pool, weights

    def place(self, request: StepRequest, decision: RouteDecision) -> Hashable:
        assert self.pool is not None
        self.pool = charged(self.pool, request, 1)
        return self.pool.name

    def refresh(self, request: StepRequest, candidate: Candidate) -> Candidate:
        assert self.pool is not None
        wait = 1.0 + CondorRules.wait(request, self.pool, self.weights)
        return (wait, *candidate[0][1:]), CONDOR, self.pool, None, wait, candidate[5]

    def view(self, capacity: CapacityView) -> CapacityView:
        if self.pool is None:
            return capacity
        return replace(capacity, others={**capacity.others, "condor": self.pool})


WITH_CONDOR = STANDARD_RULES.with_rules(CondorRules())
# Slurm is busy (its partition full), the Condor pool has 4 idle CPUs
BUSY = SlurmPartitionView(name="cpu", nodes=1, cpus_total=4, cpus_idle=0, running_jobs=4)
SNAPSHOT = CapacityView(
    slurm=(SlurmClusterView(name="hpc", partitions=(BUSY,), default_partition="cpu"),),
    others={"condor": CondorPoolView(name="main", cpus_total=4, cpus_idle=4)},
)
W = SiteWeights()


def request(cpus: int = 1, gpus: int = 0) -> StepRequest:
    return StepRequest(rule="r", shape=Resources(cpus=cpus, gpus=gpus))


def test_a_registered_third_backend_is_routed_with_its_reason_and_the_runner_up_named() -> None:
    decision = route(request(), SNAPSHOT, W, WITH_CONDOR)
    assert (decision.backend, decision.target, decision.decision) == (
        "condor",
        "condor/main",
        Decision.SHORTEST_WAIT,
    )
    assert decision.reason.startswith("condor main: 4/4 CPUs idle; beats slurm hpc/cpu (weighted wait")
    # the standard book does not know it: the same snapshot goes to Slurm, as before
    assert route(request(), SNAPSHOT, W).backend == Backend.SLURM


def test_its_refusals_join_the_others_when_nothing_fits() -> None:
    decision = route(request(gpus=1), SNAPSHOT, W, WITH_CONDOR)
    assert decision.backend is None and decision.decision == Decision.REFUSED
    assert "condor main: has no GPUs" in decision.reason
    nothing = route(request(), CapacityView(), W, WITH_CONDOR)
    assert "no SlurmCluster" in nothing.reason and "condor: no pool" in nothing.reason


def test_a_burst_fills_the_third_backend_then_spreads_to_slurm_through_its_ledger() -> None:
    decisions = route_batch([request(cpus=2)] * 3, SNAPSHOT, W, WITH_CONDOR)
    assert [d.target for d in decisions] == ["condor/main", "condor/main", "hpc/cpu"]
    # charge() reaches the same backend's rules: two steps fill the pool
    after = charge(SNAPSHOT, request(cpus=2), decisions[0], 2, WITH_CONDOR)
    assert cast(CondorPoolView, after.others["condor"]).cpus_idle == 0
    assert route(request(cpus=2), after, W, WITH_CONDOR).backend == Backend.SLURM


def test_the_plan_simulates_the_third_backend_s_pool() -> None:
    machine = build_machine(SNAPSHOT, WITH_CONDOR)
    assert machine.pool_of("condor/main") == "condor:main"
    assert machine.pool_of("hpc/cpu") == "slurm:hpc/cpu"
    need = build_need(Resources(cpus=2), CONDOR, WITH_CONDOR)
    steps = [SimStep(job_id=i, target="condor/main", need=need, runtime_seconds=60) for i in range(3)]
    schedule = simulate_schedule(steps, machine)
    assert sorted(e.start for e in schedule.estimates.values()) == [0, 0, 60]  # 4 CPUs hold two at once


def test_the_plugin_s_plan_runs_the_third_backend_s_steps_with_its_start_up() -> None:
    to_condor = route(request(cpus=2), SNAPSHOT, W, WITH_CONDOR)
    shape = Resources(cpus=2, runtime_minutes=1)
    entries = [PlanEntry(0, i, "r", "", StepResources(shape=shape), to_condor) for i in range(3)]
    plan = plan_schedule(entries, {}, SNAPSHOT, W, rules=WITH_CONDOR)
    estimates = sorted((e.start, e.end) for e in plan.schedule.estimates.values())
    assert estimates == [(1.0, 61.0), (1.0, 61.0), (62.0, 122.0)]  # 1 s to start, two at once
    assert plan.schedule.unlimited == () and plan.schedule.oversized == ()


def test_a_backend_no_one_registered_is_an_error_naming_the_registered_ones() -> None:
    to_condor = route(request(), SNAPSHOT, W, WITH_CONDOR)
    with pytest.raises(
        UnknownBackend, match=r"no backend 'condor' is registered \(registered: slurm, kueue\)"
    ):
        charge(SNAPSHOT, request(), to_condor)  # the standard book: not sent down Kueue's branch
    with pytest.raises(UnknownBackend, match="'condor'"):
        build_need(Resources(), CONDOR)


def test_a_backend_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        STANDARD_RULES.with_rules(CondorRules(), CondorRules())
