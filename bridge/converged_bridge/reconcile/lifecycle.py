"""A step's life as every backend shares it: the finalizer, finished steps, deletion (pure)."""

from __future__ import annotations

from collections.abc import Callable

from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.reconcile.intents import AddFinalizer, Intent, RemoveFinalizer
from converged_bridge.reconcile.status import is_finished
from converged_bridge.wire import FINALIZER

Decision = list[Intent] | None  # None: the backend has not observed enough to decide yet


def plan_lifecycle(
    step: WorkflowStep, *, running: Callable[[], Decision], cleanup: Callable[[], Decision]
) -> Decision:
    """The whole plan for `step`, the same for every backend.

    A step being deleted gets its backend's `cleanup` (cancel the job, delete the object), then loses
    the finalizer; a finished step needs nothing; any other gets the finalizer first, so its backend
    job is never left behind, then its backend's `running` plan.
    """
    has_finalizer = FINALIZER in step.metadata.finalizers
    if step.metadata.deletion_timestamp is not None:
        intents = cleanup()
        if intents is None:
            return None
        return [*intents, RemoveFinalizer()] if has_finalizer else intents
    if is_finished(step):
        return []
    intents = running()
    if intents is None:
        return None
    return intents if has_finalizer else [AddFinalizer(), *intents]
