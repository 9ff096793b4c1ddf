"""A woken cycle (an informer's news: only that backend's steps, no LIST of StepAllocations) shows its
unit the allocations the last full cycle listed. Shown none, a unit reads them as gone, and the steps
waiting in them as ended (found live: test_kueue_allocation_runs_its_steps_in_one_pod)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import Backend, WorkflowStep
from converged_bridge.reconcile.status import StatusTiming
from tests.unit.test_allocation_plans import allocation
from tests.unit.test_controller_cycle import controller_over, step_object


class ObservingUnit:
    """A Kueue unit that records what each cycle shows it and decides nothing."""

    backend = Backend.KUEUE

    def __init__(self) -> None:
        self.shown: list[list[str]] = []

    def observe(self, steps: Sequence[WorkflowStep], allocations: Sequence[StepAllocation] = ()) -> None:
        self.shown.append([a.metadata.name or "" for a in allocations])

    def decide(self, step: WorkflowStep, timing: StatusTiming) -> None:
        return None

    def forget(self, uid: str) -> None:
        return None

    def close(self) -> None:
        return None


def test_a_woken_cycle_shows_the_unit_the_allocations_of_the_last_full_cycle(tmp_path: Path) -> None:
    kueue_step = step_object("k")
    kueue_step["spec"] = {**kueue_step["spec"], "backend": "kueue", "slurm": None, "image": "img"}
    controller, *_ = controller_over([kueue_step], [], tmp_path)
    unit = ObservingUnit()
    controller.units[Backend.KUEUE] = unit  # type: ignore[assignment]
    listed = {Backend.KUEUE: [allocation()]}
    polls: list[Any] = []

    def poll(steps: Any) -> dict[Backend, list[StepAllocation]]:
        polls.append(steps)
        return listed

    controller.allocations.poll = poll  # type: ignore[method-assign]
    controller.poll_and_reconcile()  # a full cycle lists them
    controller.poll_and_reconcile(only=frozenset({Backend.KUEUE}))  # a woken one does not
    name = allocation().metadata.name
    assert unit.shown == [[name], [name]]
    assert len(polls) == 1
