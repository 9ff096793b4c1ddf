"""What every kind a workflow run owns (WorkflowSteps, StepAllocations) is read and written by, once.

A run's objects carry its label (`converged.dev/run`); they are listed and deleted by it in one request
each. Status is a merge patch of the status subresource; finalizers are replaced whole, guarded by the
resourceVersion the caller read when it has one.
"""

from __future__ import annotations

from typing import Any

from converged_bridge.kube.objects import KubeObjects
from converged_bridge.wire import RUN_LABEL, Kind

FINISHED_PHASES = ("Succeeded", "Failed", "Cancelled")


class RunObjects:
    """The run-scoped requests for one `kind`; the facades for steps and allocations hold one each."""

    def __init__(self, objects: KubeObjects, kind: Kind) -> None:
        self.objects = objects
        self.kind = kind

    def list_run(self, namespace: str, run_id: str) -> list[dict[str, Any]]:
        """Every object of the run, in one LIST."""
        return self.objects.list_objects(
            self.kind, namespace=namespace, label_selector=f"{RUN_LABEL}={run_id}"
        )

    def delete_unfinished(self, namespace: str, run_id: str) -> list[str]:
        """Delete the run's objects that have not finished, in one request (status.phase is a selectable
        field); the controller then ends their backend jobs. Finished ones stay as the record. The names
        of those deleted."""
        deleted = self.objects.delete_collection(
            self.kind,
            namespace=namespace,
            label_selector=f"{RUN_LABEL}={run_id}",
            field_selector=",".join(f"status.phase!={phase}" for phase in FINISHED_PHASES),
        )
        return [o["metadata"]["name"] for o in deleted]

    def delete_run(self, namespace: str, run_id: str) -> int:
        """Delete every object of the run, in one request (a finished run past its retention); the number
        deleted."""
        deleted = self.objects.delete_collection(
            self.kind, namespace=namespace, label_selector=f"{RUN_LABEL}={run_id}"
        )
        return len(deleted)

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return self.objects.patch(
            self.kind, name, {"status": status}, namespace=namespace, subresource="status"
        )

    def patch_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str | None
    ) -> dict[str, Any]:
        """Replace metadata.finalizers; with `resource_version` the patch fails on a concurrent change."""
        meta: dict[str, Any] = {"finalizers": finalizers}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return self.objects.patch(
            self.kind, name, {"metadata": meta}, namespace=namespace, verb="patch-finalizers"
        )
