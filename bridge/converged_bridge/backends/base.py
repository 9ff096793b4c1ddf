"""One interface every backend implements; the controller knows backends only through it.

A backend unit observes its jobs for all of its steps and allocations in one call per cycle (one Slurm
listing per cluster; one LIST per Kubernetes kind), decides a step's or an allocation's intents with a
pure plan over what it observed, and carries out its own intents (submit, cancel, create, delete, hand a
step over). Finalizers, finished objects and deletion are handled once, in `reconcile.lifecycle`, for
every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from converged_bridge.allocation.plan import StepSummary
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import Backend, WorkflowStep
from converged_bridge.reconcile.intents import BackendIntent, Executed, Intent
from converged_bridge.reconcile.status import StatusTiming


class BackendUnit(Protocol):
    backend: Backend
    queries: int  # the backend's own listings `observe` made so far (0 where KubeCore counts them)

    def observe(self, steps: Sequence[WorkflowStep], allocations: Sequence[StepAllocation] = ()) -> None:
        """Read the backend's state for these steps (its unfinished or deleted ones) and allocations, in as
        few requests as the backend allows. Errors are logged; what could not be read counts as not
        observed."""

    def decide(self, step: WorkflowStep, timing: StatusTiming) -> list[Intent] | None:
        """The plan for a running step, from what was observed (pure plan); None: wait for the next
        observation."""

    def decide_cleanup(self, step: WorkflowStep) -> list[Intent] | None:
        """What must go before a deleted step's finalizer (cancel its job); None: observe first."""

    def execute(self, step: WorkflowStep, intent: BackendIntent) -> Executed:
        """Carry out one of the backend's own intents; transient failures become `stop`."""

    def decide_allocation(
        self, alloc: StepAllocation, steps: Sequence[StepSummary], timing: StatusTiming
    ) -> list[Intent] | None:
        """The plan for a live StepAllocation whose steps are `steps`; None: observe first."""

    def decide_allocation_cleanup(
        self, alloc: StepAllocation, steps: Sequence[StepSummary], timing: StatusTiming
    ) -> list[Intent] | None:
        """What must go before a deleted allocation's finalizer (end its job); None: observe first."""

    def execute_allocation(self, alloc: StepAllocation, intent: BackendIntent) -> Executed:
        """Carry out one of the backend's own intents for an allocation."""

    def finished(self, step: WorkflowStep) -> None:
        """The step's terminal status is written: drop what it kept on the side (secret files)."""

    def forget(self, uid: str) -> None:
        """The step is gone from the API: drop its bookkeeping."""

    def close(self) -> None:
        """Release connections."""
