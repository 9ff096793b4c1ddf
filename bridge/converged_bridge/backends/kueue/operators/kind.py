"""What the Kueue backend needs to know of one operator kind: one module per kind fills it in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from converged_bridge.api.workflowstep import BackendKind, Operator, WorkflowStep
from converged_bridge.backends.kueue.operators.common import BuiltObject, KueueSite
from converged_bridge.wire import Kind


@dataclass(frozen=True)
class OperatorKind:
    operator: Operator  # the WorkflowStep's spec.operator
    kind: Kind  # the object converged creates
    backend_kind: BackendKind  # how status.backendRef names it
    build: Callable[[WorkflowStep, KueueSite], BuiltObject]  # pure
    admitted: Kind | None = None  # the kind whose Workload Kueue admits, when not `kind` itself
    mpi: bool = False  # runs one program over several nodes

    @property
    def workload_owner(self) -> Kind:
        """The kind whose Workload carries the admission (a MiniCluster's is its Job's)."""
        return self.admitted or self.kind
