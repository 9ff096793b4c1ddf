"""What decisions about allocations' steps ask for, beyond the generic intents: the hand-over, carried
out by the backend unit through `allocation.handover` (the allocation's status is the generic
`WriteAllocationStatus`, which the controller applies itself)."""

from __future__ import annotations

from dataclasses import dataclass

from converged_bridge.allocation.paths import AllocationPaths
from converged_bridge.reconcile.intents import BackendIntent


@dataclass(frozen=True)
class HandOverStep(BackendIntent):
    """Put the step's script into the allocation's inbox (exactly once)."""

    paths: AllocationPaths
    uid: str
    script: str
    warm: str | None = None  # its spec for the warm launcher, when it can run as a fork of it


@dataclass(frozen=True)
class CancelHandedStep(BackendIntent):
    """Mark a handed-over step cancelled; if the agent had claimed it, wait until it has stopped it."""

    paths: AllocationPaths
    uid: str


@dataclass(frozen=True)
class CloseAllocation(BackendIntent):
    """Tell the agent that no step will come any more."""

    paths: AllocationPaths
