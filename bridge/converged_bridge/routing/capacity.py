"""Build the router's CapacityView from Kubernetes objects. Pure: objects in, typed view out.

Inputs are the JSON objects the API returns: SlurmClusters (their status is written by the resource
daemon), a LocalQueue with its ClusterQueue and ResourceFlavors, and the names of installed CRDs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from converged_bridge.api.slurmcluster import PartitionState, SlurmCluster
from converged_bridge.api.workflowstep import Operator
from converged_bridge.quantity import parse_quantity
from converged_bridge.routing.types import (
    KueueFlavorView,
    KueueQueueView,
    SlurmClusterView,
    SlurmPartitionView,
)
from converged_bridge.wire import GPU_MODEL_LABEL, GPU_RESOURCE, JOBSETS, MINICLUSTERS, MPIJOBS

# The CRD that makes each operator available; Job is built into Kubernetes.
OPERATOR_CRDS: Mapping[Operator, str] = {
    Operator.JOBSET: JOBSETS.crd_name,
    Operator.MPIJOB: MPIJOBS.crd_name,
    Operator.MINICLUSTER: MINICLUSTERS.crd_name,
}


def map_slurm_clusters(objects: Iterable[Mapping[str, Any]], namespace: str) -> tuple[SlurmClusterView, ...]:
    """The SlurmClusters that run steps of `namespace` (their userMapping names it), sorted by name."""
    views = []
    for obj in objects:
        try:
            cluster = SlurmCluster.model_validate(obj)
        except ValidationError:
            continue
        if any(m.namespace == namespace for m in cluster.spec.user_mapping):
            views.append(map_slurm_cluster(cluster))
    return tuple(sorted(views, key=lambda v: v.name))


def map_slurm_cluster(cluster: SlurmCluster) -> SlurmClusterView:
    """The router's view of one SlurmCluster."""
    name = cluster.metadata.name or ""
    default = cluster.spec.defaults.partition if cluster.spec.defaults else None
    reachable = not any(c.type == "Reachable" and c.status == "False" for c in cluster.status.conditions)
    mpi = cluster.spec.mpi
    if not cluster.status.partitions:
        return SlurmClusterView(
            name=name, partitions=None, default_partition=default, reachable=reachable, mpi=mpi
        )
    partitions = tuple(
        SlurmPartitionView(
            name=p.name,
            up=p.state == PartitionState.UP,
            nodes=p.total.nodes,
            cpus_total=p.total.cpus,
            cpus_idle=p.idle.cpus,
            mem_mib_per_node=(p.total.memory_mib // p.total.nodes) if p.total.nodes else None,
            gpus_total=dict(p.total.gpus),
            gpus_idle=dict(p.idle.gpus),
            pending_jobs=p.pending_jobs,
            running_jobs=p.running_jobs,
            max_time_minutes=p.max_time_minutes,
        )
        for p in cluster.status.partitions
    )
    return SlurmClusterView(
        name=name, partitions=partitions, default_partition=default, reachable=reachable, mpi=mpi
    )


def _amount(value: Any) -> float:
    """A Kubernetes quantity ("500m", "2", "8Gi") as a number; 0 when it is not one."""
    parsed = parse_quantity(value)
    return float(parsed) if parsed is not None else 0.0


def map_kueue_queue(
    local_queue: Mapping[str, Any],
    cluster_queue: Mapping[str, Any],
    flavors: Iterable[Mapping[str, Any]],
) -> KueueQueueView:
    """The router's view of a LocalQueue, its ClusterQueue's quota and usage, and its flavors."""
    meta = local_queue.get("metadata", {})
    labels = {
        f.get("metadata", {}).get("name", ""): f.get("spec", {}).get("nodeLabels", {}) or {} for f in flavors
    }
    quota: dict[str, dict[str, float]] = {}
    for group in cluster_queue.get("spec", {}).get("resourceGroups", []) or []:
        for flavor in group.get("flavors", []) or []:
            amounts = quota.setdefault(flavor.get("name", ""), {})
            for resource in flavor.get("resources", []) or []:
                amounts[resource.get("name", "")] = _amount(resource.get("nominalQuota", 0))
    status = cluster_queue.get("status", {}) or {}
    used: dict[str, dict[str, float]] = {}
    for flavor in status.get("flavorsUsage", []) or []:
        used[flavor.get("name", "")] = {
            r.get("name", ""): _amount(r.get("total", 0)) for r in flavor.get("resources", []) or []
        }
    views = tuple(
        KueueFlavorView(
            name=name,
            cpu_quota_milli=round(amounts.get("cpu", 0) * 1000),
            cpu_used_milli=round(used.get(name, {}).get("cpu", 0) * 1000),
            gpu_quota=int(amounts.get(GPU_RESOURCE, 0)),
            gpu_used=int(used.get(name, {}).get(GPU_RESOURCE, 0)),
            gpu_model=labels.get(name, {}).get(GPU_MODEL_LABEL),
        )
        for name, amounts in quota.items()
    )
    active = any(
        c.get("type") == "Active" and c.get("status") == "True" for c in status.get("conditions", []) or []
    )
    return KueueQueueView(
        local_queue=f"{meta.get('namespace', '')}/{meta.get('name', '')}",
        cluster_queue=str(cluster_queue.get("metadata", {}).get("name", "")),
        flavors=views,
        pending_workloads=int(status.get("pendingWorkloads", 0) or 0),
        admitted_workloads=int(status.get("admittedWorkloads", 0) or 0),
        active=active,
    )


def map_operators(crd_names: Iterable[str]) -> frozenset[Operator]:
    """The operators available, given the names of the CRDs installed in the cluster."""
    names = set(crd_names)
    return frozenset({Operator.JOB} | {op for op, crd in OPERATOR_CRDS.items() if crd in names})
