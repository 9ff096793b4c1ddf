"""`AllocationDriver.apply`, the one place that changes a StepAllocation: finalizers (ours only),
status (only what the new one has; keys it dropped are cleared), events, and the unit's own intents
with what their execution says comes next; a write the API server refuses ends the plan there.

StepAllocations, Events and the backend unit are our edges: recording fakes stand in for them.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from converged_bridge.api.stepallocation import StepAllocation, StepAllocationStatus
from converged_bridge.api.workflowstep import Backend, Phase
from converged_bridge.backends.base import BackendUnit
from converged_bridge.controller.allocations import AllocationDriver
from converged_bridge.errors import TransientBackendError
from converged_bridge.kube.allocations import StepAllocations
from converged_bridge.kube.core import Conflict, NotFound
from converged_bridge.reconcile.intents import (
    DONE,
    AddFinalizer,
    BackendIntent,
    Emit,
    Executed,
    Intent,
    RemoveFinalizer,
    WriteAllocationStatus,
)
from converged_bridge.wire import FINALIZER
from tests.unit.clocks import ManualClock
from tests.unit.test_allocation_plans import ALLOC_UID, allocation

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
OTHERS = "example.com/keep"  # someone else's finalizer: never ours to drop


class RecordingAllocations:
    """StepAllocations over one stored object; every write recorded in order, versions opaque. A write
    can be set to fail with `refuse`."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.stored = copy.deepcopy(obj)
        self.stored["metadata"]["resourceVersion"] = "v0"
        self.writes: list[tuple[str, Any]] = []
        self.refuse: Exception | None = None
        self._n = 0

    def _answer(self) -> dict[str, Any]:
        self._n += 1
        self.stored["metadata"]["resourceVersion"] = f"v{self._n}"
        return copy.deepcopy(self.stored)

    def list_allocations(
        self, namespace: str | None = None, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        return [copy.deepcopy(self.stored)]

    def patch_allocation_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str | None
    ) -> dict[str, Any]:
        self.writes.append(("finalizers", (finalizers, resource_version)))
        if self.refuse is not None:
            raise self.refuse
        self.stored["metadata"]["finalizers"] = finalizers
        return self._answer()

    def patch_allocation_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("status", status))
        if self.refuse is not None:
            raise self.refuse
        merged = {**self.stored.get("status", {}), **status}
        self.stored["status"] = {k: v for k, v in merged.items() if v is not None}
        return self._answer()


class RecordingEvents:
    def __init__(self, into: list[tuple[str, Any]]) -> None:
        self.into = into

    def emit_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.into.append(("event", (obj["metadata"]["name"], type_, reason, message)))


class Submit(BackendIntent):
    pass


class RecordingUnit:
    """A backend unit that carries out allocation intents as scripted."""

    backend = Backend.SLURM
    queries = 0

    def __init__(self, into: list[tuple[str, Any]], answer: Executed) -> None:
        self.into = into
        self.answer = answer

    def execute_allocation(self, alloc: StepAllocation, intent: BackendIntent) -> Executed:
        self.into.append(("execute", (alloc.metadata.name, type(intent).__name__)))
        return self.answer


def driver_over(
    obj: dict[str, Any], answer: Executed = DONE
) -> tuple[AllocationDriver, RecordingAllocations, ManualClock]:
    api = RecordingAllocations(obj)
    clock = ManualClock(wall=T0)
    unit = RecordingUnit(api.writes, answer)
    driver = AllocationDriver(
        cast(StepAllocations, api),
        RecordingEvents(api.writes),
        {Backend.SLURM: cast(BackendUnit, unit)},
        namespace=None,
        label_selector="",
        pending_reason_refresh=30.0,
        clock=clock.wall,
    )
    assert driver.poll({}) == {Backend.SLURM: [driver._parsed[ALLOC_UID][1]]}  # listed, parsed, live
    return driver, api, clock


def stored(**status: Any) -> dict[str, Any]:
    obj = allocation().to_manifest()
    obj["metadata"]["finalizers"] = [OTHERS]
    obj["status"] = status
    return obj


def running(**kw: Any) -> WriteAllocationStatus:
    return WriteAllocationStatus(StepAllocationStatus(phase=Phase.RUNNING, observed_generation=1, **kw))


def test_a_plan_is_applied_in_order_finalizer_status_event_and_held_as_the_answers_say() -> None:
    driver, api, clock = driver_over(stored(phase="Queued", reason="Priority", target="hpc/cpu"))
    clock.advance(3)
    driver.apply(ALLOC_UID, [AddFinalizer(), running(target="hpc/cpu"), Emit("Normal", "Running", "on c1")])
    assert api.writes == [
        ("finalizers", ([OTHERS, FINALIZER], "v0")),  # ours added, the other kept, on the version held
        # the new status whole; what it no longer has (the pending reason) cleared
        (
            "status",
            {
                "phase": "Running",
                "observedGeneration": 1,
                "conditions": [],
                "target": "hpc/cpu",
                "reason": None,
            },
        ),
        ("event", ("sm-1-g1", "Normal", "Running", "on c1")),
    ]
    held = driver.objects[ALLOC_UID]
    assert held["status"] == {
        "phase": "Running",
        "observedGeneration": 1,
        "conditions": [],
        "target": "hpc/cpu",
    }
    assert held["metadata"]["resourceVersion"] == "v2"  # the last answer
    assert driver._written[ALLOC_UID] == T0 + timedelta(seconds=3)


def test_removing_our_finalizer_keeps_everyone_else_s() -> None:
    obj = stored()
    obj["metadata"]["finalizers"] = [FINALIZER, OTHERS, FINALIZER]
    driver, api, _ = driver_over(obj)
    driver.apply(ALLOC_UID, [RemoveFinalizer()])
    assert api.writes == [("finalizers", ([OTHERS], "v0"))]
    driver.apply(ALLOC_UID, [AddFinalizer()])  # added once, even if listed twice before
    assert api.writes[-1] == ("finalizers", ([OTHERS, FINALIZER], "v1"))


def test_the_unit_carries_out_its_intents_and_what_it_answers_comes_next() -> None:
    failed = WriteAllocationStatus(StepAllocationStatus(phase=Phase.FAILED, reason="SubmitRefused"))
    driver, api, _ = driver_over(stored(), Executed(then=(failed,)))
    driver.apply(ALLOC_UID, [Submit(), running(), Emit("Normal", "Submitted", "job 42")])
    assert api.writes == [
        ("execute", ("sm-1-g1", "Submit")),
        ("status", {"phase": "Failed", "conditions": [], "reason": "SubmitRefused"}),  # instead of the rest
    ]


def test_a_unit_that_stops_or_learnt_something_ends_the_plan_until_the_next_cycle() -> None:
    for answer in (Executed(stop=True), Executed(decide_again=True)):
        driver, api, _ = driver_over(stored(), answer)
        driver.apply(ALLOC_UID, [Submit(), running()])
        assert api.writes == [("execute", ("sm-1-g1", "Submit"))]
    driver, api, _ = driver_over(stored())  # done: the plan goes on
    driver.apply(ALLOC_UID, [Submit(), running()])
    assert [w[0] for w in api.writes] == ["execute", "status"]


def test_a_refused_write_ends_the_plan_and_a_gone_allocation_is_dropped() -> None:
    plan: list[Intent] = [running(), Emit("Normal", "Running", "")]
    driver, api, _ = driver_over(stored())
    api.refuse = Conflict("PATCH .../stepallocations/sm-1-g1/status: conflict")
    driver.apply(ALLOC_UID, plan)
    assert [w[0] for w in api.writes] == ["status"]  # no event for a status not written
    assert ALLOC_UID in driver.objects  # the next LIST brings the newer object

    api.writes.clear()
    api.refuse = TransientBackendError("PATCH .../stepallocations/sm-1-g1/status: HTTP 503")
    driver.apply(ALLOC_UID, plan)
    assert [w[0] for w in api.writes] == ["status"] and ALLOC_UID in driver.objects

    api.writes.clear()
    api.refuse = NotFound("PATCH .../stepallocations/sm-1-g1/status: not found")
    driver.apply(ALLOC_UID, plan)
    assert [w[0] for w in api.writes] == ["status"] and ALLOC_UID not in driver.objects
    driver.apply(ALLOC_UID, plan)  # gone: nothing more is tried
    assert [w[0] for w in api.writes] == ["status"]


def test_an_allocation_of_a_backend_without_a_unit_is_left_alone_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = RecordingAllocations(allocation(backend="kueue").to_manifest())
    driver = AllocationDriver(
        cast(StepAllocations, api),
        RecordingEvents(api.writes),
        {Backend.SLURM: cast(BackendUnit, RecordingUnit(api.writes, DONE))},
        namespace=None,
        label_selector="",
        pending_reason_refresh=30.0,
        clock=ManualClock(wall=T0).wall,
    )
    with caplog.at_level(logging.WARNING, logger="converged.controller.allocations"):
        for _ in range(2):
            assert set(driver.poll({})) == {Backend.KUEUE}
            driver.reconcile({}, lambda apply: apply())
    assert api.writes == []  # no finalizer, no status: nothing sent down another backend's unit
    assert [r.getMessage() for r in caplog.records] == [
        "allocation team-a/sm-1-g1 is left alone: no backend 'kueue' is registered (registered: slurm)"
    ]
