"""WorkflowSteps and SlurmClusters through `KubeCore`: what the controller and a workflow run read and write.

Status reads are one LIST (or a WATCH) for many steps, never a request per step; a run's unfinished
steps are cancelled with one DELETE of the collection (kube.runs, shared with StepAllocations).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from converged_bridge.kube.core import object_path
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.kube.runs import RunObjects
from converged_bridge.wire import SLURM_CLUSTERS, WORKFLOW_STEPS


class WorkflowSteps:
    def __init__(self, objects: KubeObjects) -> None:
        self.objects = objects
        self.run = RunObjects(objects, WORKFLOW_STEPS)

    # --- many steps at once ---
    def list_steps(
        self, namespace: str | None = None, label_selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """WorkflowSteps (one namespace, or all) matching `label_selector`, and the list's resourceVersion."""
        doc = self.objects.list_page(WORKFLOW_STEPS, label_selector or None, None, namespace)
        return list(doc.get("items") or []), str(doc["metadata"]["resourceVersion"])

    def watch_steps(
        self,
        resource_version: str,
        namespace: str | None = None,
        timeout_seconds: int = 300,
        label_selector: str = "",
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) events after `resource_version`; BOOKMARKs keep it fresh, ERROR means list again."""
        query = [("resourceVersion", resource_version)]
        if label_selector:
            query.append(("labelSelector", label_selector))
        path = object_path(WORKFLOW_STEPS, None, namespace)
        yield from self.objects.core.watch(path, query, timeout_seconds)

    def list_run_steps(self, namespace: str, run_id: str) -> list[dict[str, Any]]:
        return self.run.list_run(namespace, run_id)

    def delete_unfinished_steps(self, namespace: str, run_id: str) -> list[str]:
        return self.run.delete_unfinished(namespace, run_id)

    def delete_run_steps(self, namespace: str, run_id: str) -> int:
        return self.run.delete_run(namespace, run_id)

    # --- one step ---
    def delete_step(self, namespace: str, name: str) -> None:
        self.objects.delete(WORKFLOW_STEPS, name, namespace=namespace)

    def get_step(self, namespace: str, name: str) -> dict[str, Any]:
        return self.objects.get(WORKFLOW_STEPS, name, namespace=namespace)

    def create_step(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        return self.objects.create(WORKFLOW_STEPS, manifest, namespace=namespace)

    def patch_step_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return self.run.patch_status(namespace, name, status)

    def patch_step_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str | None
    ) -> dict[str, Any]:
        return self.run.patch_finalizers(namespace, name, finalizers, resource_version)

    # --- SlurmClusters ---
    def list_slurm_clusters(self) -> list[dict[str, Any]]:
        return self.objects.list_objects(SLURM_CLUSTERS)
