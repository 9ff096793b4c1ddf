"""StepAllocations through `KubeCore`: what the controller and a workflow run read and write.

The controller LISTs them once per poll cycle (they are few: one per group of a run) and writes their
finalizers and status; the plugin creates them, closes them (a merge patch of `spec.closed`), and deletes
a run's unfinished ones in one call when it is cancelled.
"""

from __future__ import annotations

from typing import Any

from converged_bridge.kube.objects import KubeObjects
from converged_bridge.kube.runs import RunObjects
from converged_bridge.wire import STEP_ALLOCATIONS


class StepAllocations:
    def __init__(self, objects: KubeObjects) -> None:
        self.objects = objects
        self.run = RunObjects(objects, STEP_ALLOCATIONS)

    def list_allocations(
        self, namespace: str | None = None, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """StepAllocations (one namespace, or all) matching `label_selector`, in one LIST."""
        return self.objects.list_objects(
            STEP_ALLOCATIONS, namespace=namespace, label_selector=label_selector or None
        )

    def list_run_allocations(self, namespace: str, run_id: str) -> list[dict[str, Any]]:
        return self.run.list_run(namespace, run_id)

    def create_allocation(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        return self.objects.create(STEP_ALLOCATIONS, manifest, namespace=namespace)

    def close_allocation(self, namespace: str, name: str, expected_steps: int) -> dict[str, Any]:
        """No step of its group will come any more: it was given `expected_steps` in all."""
        patch = {"spec": {"closed": True, "expectedSteps": expected_steps}}
        return self.objects.patch(STEP_ALLOCATIONS, name, patch, namespace=namespace, verb="patch-close")

    def delete_unfinished_allocations(self, namespace: str, run_id: str) -> list[str]:
        return self.run.delete_unfinished(namespace, run_id)

    def delete_run_allocations(self, namespace: str, run_id: str) -> int:
        return self.run.delete_run(namespace, run_id)

    def patch_allocation_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return self.run.patch_status(namespace, name, status)

    def patch_allocation_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str | None
    ) -> dict[str, Any]:
        return self.run.patch_finalizers(namespace, name, finalizers, resource_version)
