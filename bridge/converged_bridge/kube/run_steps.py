"""The Kubernetes calls of one workflow run: its WorkflowSteps and the capacity the router reads.

For the Snakemake plugin (and any other workflow front end). Status reads are one LIST per call with
the run's label selector, never a request per step; cancelling is one DELETE of the collection.
Errors come out as converged_bridge.errors' transient/permanent BackendErrors.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from converged_bridge.kube.access import _translate

GROUP = "converged.dev"
VERSION = "v1alpha1"
STEPS = "workflowsteps"
CLUSTERS = "slurmclusters"
KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta1"
RUN_LABEL = "converged.dev/run"
RULE_LABEL = "converged.dev/rule"
FINISHED_PHASES = ("Succeeded", "Failed", "Cancelled")


class RunSteps:
    """WorkflowSteps of runs, plus the read-only capacity objects; counts its API requests in `calls`."""

    def __init__(self, api_client: Any, *, field_manager: str = "converged-snakemake") -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)
        self._ext = client.ApiextensionsV1Api(api_client)
        self.field_manager = field_manager
        self.calls: Counter[str] = Counter()

    def _do(self, kind: str, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls[kind] += 1
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise _translate(e, what) from e

    # --- WorkflowSteps of a run ---
    def create_step(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest.get("metadata", {}).get("name", "?")
        return cast(
            dict[str, Any],
            self._do(
                "create",
                f"create workflowstep {namespace}/{name}",
                self._custom.create_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                STEPS,
                manifest,
                field_manager=self.field_manager,
            ),
        )

    def list_run_steps(self, namespace: str, run_id: str) -> list[dict[str, Any]]:
        """Every WorkflowStep of the run, in one LIST."""
        doc = self._do(
            "list",
            f"list workflowsteps of run {run_id}",
            self._custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            STEPS,
            label_selector=f"{RUN_LABEL}={run_id}",
        )
        return list(doc.get("items", []))

    def delete_unfinished_steps(self, namespace: str, run_id: str) -> list[str]:
        """Delete the run's steps that have not finished, in one call (the CRD makes status.phase
        selectable); the controller then cancels their backend jobs. Finished steps stay as the record.
        Returns the names of the steps deleted."""
        doc = self._do(
            "delete",
            f"delete unfinished workflowsteps of run {run_id}",
            self._custom.delete_collection_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            STEPS,
            label_selector=f"{RUN_LABEL}={run_id}",
            field_selector=",".join(f"status.phase!={phase}" for phase in FINISHED_PHASES),
        )
        return [o["metadata"]["name"] for o in doc.get("items", [])]

    # --- capacity, read-only ---
    def list_slurm_clusters(self) -> list[dict[str, Any]]:
        doc = self._do(
            "list", "list slurmclusters", self._custom.list_cluster_custom_object, GROUP, VERSION, CLUSTERS
        )
        return list(doc.get("items", []))

    def list_local_queues(self, namespace: str) -> list[dict[str, Any]]:
        doc = self._do(
            "list",
            f"list localqueues in {namespace}",
            self._custom.list_namespaced_custom_object,
            KUEUE_GROUP,
            KUEUE_VERSION,
            namespace,
            "localqueues",
        )
        return list(doc.get("items", []))

    def list_cluster_queues(self) -> list[dict[str, Any]]:
        doc = self._do(
            "list",
            "list clusterqueues",
            self._custom.list_cluster_custom_object,
            KUEUE_GROUP,
            KUEUE_VERSION,
            "clusterqueues",
        )
        return list(doc.get("items", []))

    def list_resource_flavors(self) -> list[dict[str, Any]]:
        doc = self._do(
            "list",
            "list resourceflavors",
            self._custom.list_cluster_custom_object,
            KUEUE_GROUP,
            KUEUE_VERSION,
            "resourceflavors",
        )
        return list(doc.get("items", []))

    def crd_names(self) -> list[str]:
        """Names of the installed CustomResourceDefinitions (which operators exist)."""
        doc = self._do("list", "list customresourcedefinitions", self._ext.list_custom_resource_definition)
        return sorted(str(item.metadata.name) for item in doc.items)
