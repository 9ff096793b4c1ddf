"""An object's life as every backend shares it: the finalizer, finished objects, deletion (pure).

The same for a WorkflowStep and a StepAllocation: both carry the finalizer while their backend job may
exist, and both have a phase whose terminal values end their life."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from converged_bridge.api.meta import ObjectMeta
from converged_bridge.api.workflowstep import Phase
from converged_bridge.reconcile.intents import AddFinalizer, Intent, RemoveFinalizer
from converged_bridge.reconcile.status import TERMINAL_PHASES
from converged_bridge.wire import FINALIZER

Decision = list[Intent] | None  # None: the backend has not observed enough to decide yet


class _Phased(Protocol):
    @property
    def phase(self) -> Phase | None: ...


class Reconciled(Protocol):
    """A WorkflowStep or a StepAllocation, as the lifecycle sees it."""

    @property
    def metadata(self) -> ObjectMeta: ...

    @property
    def status(self) -> _Phased: ...


def plan_lifecycle(
    obj: Reconciled, *, running: Callable[[], Decision], cleanup: Callable[[], Decision]
) -> Decision:
    """The whole plan for `obj`, the same for every backend.

    An object being deleted gets its backend's `cleanup` (cancel the job, delete the object), then loses
    the finalizer; a finished one needs nothing; any other gets the finalizer first, so its backend
    job is never left behind, then its backend's `running` plan.
    """
    has_finalizer = FINALIZER in obj.metadata.finalizers
    if obj.metadata.deletion_timestamp is not None:
        intents = cleanup()
        if intents is None:
            return None
        return [*intents, RemoveFinalizer()] if has_finalizer else intents
    if obj.status.phase in TERMINAL_PHASES:
        return []
    intents = running()
    if intents is None:
        return None
    return intents if has_finalizer else [AddFinalizer(), *intents]
