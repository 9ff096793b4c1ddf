"""The objects one Slurm partition and one Slurm cluster should look like in Kubernetes (pure builders).

Per partition: a virtual Node (labels, NoSchedule taint, capacity = the partition's nodes in service,
Ready following the partition) and a Kueue ResourceFlavor selecting it. Per cluster: one ClusterQueue
with a flavor per partition, nominal quota by the SlurmCluster's quota policy (total or idle).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from converged_bridge.api.slurmcluster import PartitionState, QuotaPolicy, SlurmClusterSpec
from converged_bridge.quantity import mib
from converged_bridge.slurm.capacity import PartitionSnapshot, Resources
from converged_bridge.wire import KUEUE_GROUP
from converged_daemon import names


def labels(cluster: str, partition: str | None = None) -> dict[str, str]:
    out = {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_CLUSTER: names.label_value(cluster)}
    if partition is not None:
        out[names.LABEL_PARTITION] = names.label_value(partition)
    return out


def taint(cluster: str) -> dict[str, str]:
    return {"key": names.TAINT_KEY, "value": names.label_value(cluster), "effect": "NoSchedule"}


def node_resources(r: Resources) -> dict[str, str]:
    """Node capacity of `r`: cpu, memory, GPUs (all, and per model), Slurm nodes; pods 0, so no pod lands."""
    out = {
        "cpu": str(r.cpus),
        "memory": mib(r.memory_mib),
        "pods": "0",
        names.RESOURCE_GPU: str(r.gpu_total),
        names.RESOURCE_SLURM_NODES: str(r.nodes),
    }
    for model, count in sorted(r.gpus.items()):
        resource = names.gpu_model_resource(model)
        if resource:
            out[resource] = str(count)
    return out


def build_node(cluster: str, partition: str) -> dict[str, Any]:
    """The Node's metadata and spec (applied to the object itself)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": names.object_name(cluster, partition),
            "labels": {**labels(cluster, partition), names.LABEL_NODE_KIND: names.NODE_KIND},
            "annotations": {names.ANNOTATION_PARTITION: partition},
        },
        "spec": {"taints": [taint(cluster)]},
    }


def build_ready_condition(ready: bool, reason: str, message: str, since: str) -> dict[str, str]:
    """The Ready condition; heartbeat = transition time, since the node Lease is the heartbeat."""
    return {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": since,
        "lastTransitionTime": since,
    }


def build_node_status(
    cluster: str, partition: str, capacity: Mapping[str, str], ready: Mapping[str, str]
) -> dict[str, Any]:
    """The Node's status (applied to the status subresource)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": names.object_name(cluster, partition)},
        "status": {"capacity": dict(capacity), "allocatable": dict(capacity), "conditions": [dict(ready)]},
    }


def build_flavor(cluster: str, partition: str, kueue_version: str) -> dict[str, Any]:
    node_labels = {
        names.LABEL_CLUSTER: names.label_value(cluster),
        names.LABEL_PARTITION: names.label_value(partition),
    }
    return {
        "apiVersion": f"{KUEUE_GROUP}/{kueue_version}",
        "kind": "ResourceFlavor",
        "metadata": {"name": names.object_name(cluster, partition), "labels": labels(cluster, partition)},
        "spec": {"nodeLabels": node_labels, "tolerations": [{**taint(cluster), "operator": "Equal"}]},
    }


def quota_resources(partitions: Sequence[PartitionSnapshot]) -> list[str]:
    """The ClusterQueue's covered resources: cpu, memory, and GPUs when any partition has them."""
    models = sorted({m for p in partitions for m in p.total.gpus})
    out = ["cpu", "memory"]
    if models:
        out.append(names.RESOURCE_GPU)
        out += [r for m in models if (r := names.gpu_model_resource(m))]
    return out


def _quota_source(p: PartitionSnapshot, policy: QuotaPolicy) -> Resources:
    if p.state != PartitionState.UP:
        return Resources()
    return p.total if policy == QuotaPolicy.TOTAL else p.idle


def _quota(r: Resources, resource: str) -> str:
    if resource == "cpu":
        return str(r.cpus)
    if resource == "memory":
        return mib(r.memory_mib)
    if resource == names.RESOURCE_GPU:
        return str(r.gpu_total)
    return str(sum(n for m, n in r.gpus.items() if names.gpu_model_resource(m) == resource))


def build_cluster_queue(
    cluster: str, spec: SlurmClusterSpec, partitions: Sequence[PartitionSnapshot], kueue_version: str
) -> dict[str, Any]:
    """One ClusterQueue for the cluster with a flavor per partition (the caller keeps to Kueue's 64),
    in the fields of `kueue_version` (v1beta2 renamed `cohort` to `cohortName`).

    A partition that is not UP gets zero quota: Slurm would queue but not start (DOWN) or refuse (DRAIN,
    INACTIVE) what Kueue admitted there. That is an admin's decision in Slurm, not a flap.
    """
    queue = spec.queue
    policy = queue.quota_policy if queue else QuotaPolicy.IDLE
    covered = quota_resources(partitions)
    flavors = [
        {
            "name": names.object_name(cluster, p.name),
            "resources": [{"name": r, "nominalQuota": _quota(_quota_source(p, policy), r)} for r in covered],
        }
        for p in partitions
    ]
    body: dict[str, Any] = {
        "namespaceSelector": {},
        "resourceGroups": [{"coveredResources": covered, "flavors": flavors}] if flavors else [],
    }
    if queue and queue.cohort:
        body[cohort_field(kueue_version)] = queue.cohort
    return {
        "apiVersion": f"{KUEUE_GROUP}/{kueue_version}",
        "kind": "ClusterQueue",
        "metadata": {
            "name": names.cluster_queue_name(cluster, queue.cluster_queue if queue else None),
            "labels": labels(cluster),
        },
        "spec": body,
    }


def cohort_field(kueue_version: str) -> str:
    """Where a ClusterQueue names its cohort: `cohort` in v1beta1, `cohortName` from v1beta2 on."""
    return "cohort" if kueue_version == "v1beta1" else "cohortName"
