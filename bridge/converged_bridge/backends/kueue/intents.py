"""What only the Kueue backend can do: create a step's operator object, and delete it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from converged_bridge.allocation.paths import AllocationPaths
from converged_bridge.reconcile.intents import BackendIntent
from converged_bridge.wire import Kind


@dataclass(frozen=True)
class CreateObject(BackendIntent):
    """Create the step's object (an AlreadyExists means it is there: adopt it)."""

    kind: Kind
    namespace: str
    body: dict[str, Any]


@dataclass(frozen=True)
class DeleteObject(BackendIntent):
    """Delete the step's object and, after it, what it owns (its pods)."""

    kind: Kind
    namespace: str
    name: str


@dataclass(frozen=True)
class CreateAllocationJob(BackendIntent):
    """Create a StepAllocation's Job (its directories first, owned by whom its pod runs as)."""

    namespace: str
    body: dict[str, Any]
    paths: AllocationPaths
    run_as_uid: int | None
    warm_launcher: str | None = None  # the spool's `warm` script, written before the Job exists
