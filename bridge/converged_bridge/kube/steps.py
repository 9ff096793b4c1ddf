"""WorkflowSteps and SlurmClusters through `KubeCore`: what the controller and a workflow run read and write.

Status reads are one LIST (or a WATCH) for many steps, never a request per step; a run's unfinished
steps are cancelled with one DELETE of the collection (status.phase is a selectable field).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from converged_bridge.kube.core import object_path
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.wire import RUN_LABEL, SLURM_CLUSTERS, WORKFLOW_STEPS

FINISHED_PHASES = ("Succeeded", "Failed", "Cancelled")


class WorkflowSteps:
    def __init__(self, objects: KubeObjects) -> None:
        self.objects = objects

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
        """Every WorkflowStep of the run, in one LIST."""
        return self.objects.list_objects(
            WORKFLOW_STEPS, namespace=namespace, label_selector=f"{RUN_LABEL}={run_id}"
        )

    def delete_unfinished_steps(self, namespace: str, run_id: str) -> list[str]:
        """Delete the run's steps that have not finished, in one request; the controller then cancels
        their backend jobs. Finished steps stay as the record. The names of the steps deleted."""
        deleted = self.objects.delete_collection(
            WORKFLOW_STEPS,
            namespace=namespace,
            label_selector=f"{RUN_LABEL}={run_id}",
            field_selector=",".join(f"status.phase!={phase}" for phase in FINISHED_PHASES),
        )
        return [o["metadata"]["name"] for o in deleted]

    def delete_run_steps(self, namespace: str, run_id: str) -> int:
        """Delete every step of the run, in one request (a finished run past its retention); the
        number deleted."""
        deleted = self.objects.delete_collection(
            WORKFLOW_STEPS, namespace=namespace, label_selector=f"{RUN_LABEL}={run_id}"
        )
        return len(deleted)

    # --- one step ---
    def delete_step(self, namespace: str, name: str) -> None:
        self.objects.delete(WORKFLOW_STEPS, name, namespace=namespace)

    def get_step(self, namespace: str, name: str) -> dict[str, Any]:
        return self.objects.get(WORKFLOW_STEPS, name, namespace=namespace)

    def create_step(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        return self.objects.create(WORKFLOW_STEPS, manifest, namespace=namespace)

    def patch_step_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return self.objects.patch(
            WORKFLOW_STEPS, name, {"status": status}, namespace=namespace, subresource="status"
        )

    def patch_step_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str | None
    ) -> dict[str, Any]:
        """Replace metadata.finalizers; with `resource_version` the patch fails on a concurrent change."""
        meta: dict[str, Any] = {"finalizers": finalizers}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return self.objects.patch(
            WORKFLOW_STEPS, name, {"metadata": meta}, namespace=namespace, verb="patch-finalizers"
        )

    # --- SlurmClusters ---
    def list_slurm_clusters(self) -> list[dict[str, Any]]:
        return self.objects.list_objects(SLURM_CLUSTERS)
