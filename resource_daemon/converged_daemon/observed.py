"""What the API server holds of the daemon's objects, grouped by Slurm cluster, and the parts of each
object the daemon owns ("views"), so desired and observed objects compare field by field (pure).

Views take API-shaped dicts, so the same function reads a desired body and an observed object.
Quantities compare by value ("16Gi" == "16384Mi"); fields other managers own are not looked at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from converged_bridge.api.slurmcluster import SlurmClusterStatus
from converged_bridge.quantity import parse_quantity
from converged_bridge.wire import OWN_PREFIX
from converged_daemon import names

OUR_LABELS = (names.LABEL_MANAGED_BY, names.LABEL_CLUSTER, names.LABEL_PARTITION, names.LABEL_NODE_KIND)


@dataclass(frozen=True)
class ObservedCluster:
    """The daemon's objects of one Slurm cluster, by name, and the SlurmCluster's status."""

    nodes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    flavors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cluster_queues: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    status: SlurmClusterStatus | None = None


@dataclass(frozen=True)
class ObservedObjects:
    """All Nodes, ResourceFlavors and ClusterQueues labelled as the daemon's, by their cluster label."""

    by_cluster: Mapping[str, ObservedCluster]

    def cluster(self, label: str, status: SlurmClusterStatus | None = None) -> ObservedCluster:
        found = self.by_cluster.get(label, ObservedCluster())
        return ObservedCluster(found.nodes, found.flavors, found.cluster_queues, status)


def group_observed(
    nodes: Iterable[Mapping[str, Any]],
    flavors: Iterable[Mapping[str, Any]],
    cluster_queues: Iterable[Mapping[str, Any]],
) -> ObservedObjects:
    grouped: dict[str, dict[str, dict[str, Mapping[str, Any]]]] = {}
    for kind, objects in (("nodes", nodes), ("flavors", flavors), ("cluster_queues", cluster_queues)):
        for obj in objects:
            meta = obj.get("metadata") or {}
            cluster = (meta.get("labels") or {}).get(names.LABEL_CLUSTER)
            if cluster:
                entry = grouped.setdefault(cluster, {"nodes": {}, "flavors": {}, "cluster_queues": {}})
                entry[kind][str(meta.get("name"))] = obj
    return ObservedObjects(
        {c: ObservedCluster(k["nodes"], k["flavors"], k["cluster_queues"]) for c, k in grouped.items()}
    )


def parse_status(obj: Mapping[str, Any] | None) -> SlurmClusterStatus | None:
    """A SlurmCluster's status, or None when absent or unreadable (then it is rewritten whole)."""
    if not obj or not obj.get("status"):
        return None
    try:
        return SlurmClusterStatus.model_validate(obj["status"])
    except ValidationError:
        return None


def _quantities(values: Mapping[str, Any] | None, owned: Iterable[str] | None = None) -> dict[str, Any]:
    out = {}
    for k, v in (values or {}).items():
        if owned is None or k in owned or k.startswith(OWN_PREFIX):
            out[k] = parse_quantity(v)
    return out


_NODE_RESOURCES = ("cpu", "memory", "pods", names.RESOURCE_GPU)


def node_main_view(obj: Mapping[str, Any]) -> Any:
    meta = obj.get("metadata") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k in OUR_LABELS}
    annotation = (meta.get("annotations") or {}).get(names.ANNOTATION_PARTITION)
    taints = sorted(
        (t.get("key"), t.get("value"), t.get("effect"))
        for t in (obj.get("spec") or {}).get("taints") or []
        if t.get("key") == names.TAINT_KEY
    )
    return labels, annotation, taints


def ready_condition(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), None)


def node_status_view(obj: Mapping[str, Any]) -> Any:
    status = obj.get("status") or {}
    ready = ready_condition(obj) or {}
    return (
        _quantities(status.get("capacity"), _NODE_RESOURCES),
        _quantities(status.get("allocatable"), _NODE_RESOURCES),
        (ready.get("status"), ready.get("reason"), ready.get("message")),
    )


def node_capacity(obj: Mapping[str, Any]) -> dict[str, str]:
    """The capacity the daemon last wrote on a Node (kept as it is while Slurm is unreachable)."""
    capacity = (obj.get("status") or {}).get("capacity") or {}
    return {k: str(v) for k, v in capacity.items() if k in _NODE_RESOURCES or k.startswith(OWN_PREFIX)}


def flavor_view(obj: Mapping[str, Any]) -> Any:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k in OUR_LABELS}
    tolerations = sorted(tuple(sorted(t.items())) for t in spec.get("tolerations") or [])
    return labels, spec.get("nodeLabels") or {}, tolerations


def cluster_queue_view(obj: Mapping[str, Any]) -> Any:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k in OUR_LABELS}
    groups = [
        (
            tuple(g.get("coveredResources") or []),
            tuple(
                (
                    f.get("name"),
                    tuple(
                        (r.get("name"), parse_quantity(r.get("nominalQuota")))
                        for r in f.get("resources") or []
                    ),
                )
                for f in g.get("flavors") or []
            ),
        )
        for g in spec.get("resourceGroups") or []
    ]
    cohort = spec.get("cohortName", spec.get("cohort"))  # v1beta2 / v1beta1
    return labels, spec.get("namespaceSelector"), cohort, groups
