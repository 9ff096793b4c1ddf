"""plan(): from one Slurm reading and what the API server holds, the writes that make them agree (pure).

Only objects whose owned fields differ produce an action. Partitions that left Slurm (or the
SlurmCluster's `partitions` list) are deleted. When Slurm cannot be read, nothing is deleted and no
quota changes: the virtual Nodes turn NotReady keeping their last capacity, and the SlurmCluster's
conditions say why.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from converged_bridge.api.conditions import Condition, ConditionStatus, set_condition
from converged_bridge.api.slurmcluster import (
    PartitionCapacity,
    PartitionState,
    PartitionStatus,
    SlurmClusterSpec,
    SlurmClusterStatus,
)
from converged_bridge.slurm.capacity import CapacitySnapshot, PartitionSnapshot, Resources
from converged_bridge.wire import SLURM_CLUSTERS
from converged_daemon import desired, names
from converged_daemon.actions import (
    Action,
    Apply,
    Delete,
    cluster_queue_ref,
    flavor_ref,
    node_ref,
    slurm_cluster_ref,
)
from converged_daemon.observed import (
    ObservedCluster,
    ObservedObjects,
    cluster_queue_view,
    flavor_view,
    node_capacity,
    node_main_view,
    node_status_view,
    ready_condition,
)

MAX_FLAVORS = 64  # Kueue: flavors per resource group
MAX_STATUS_PARTITIONS = 256  # the SlurmCluster CRD's limit
REACHABLE = "Reachable"
SYNCED = "Synced"


@dataclass(frozen=True, slots=True)
class SlurmUnreachable:
    """The cycle could not read Slurm; `message` says why."""

    message: str


Reading = CapacitySnapshot | SlurmUnreachable


@dataclass(frozen=True)
class PlanSettings:
    status_refresh_seconds: float = 300.0  # rewrite an unchanged status (lastSyncTime) this often at most
    max_flavors: int = MAX_FLAVORS
    kueue_version: str = "v1beta2"  # the kueue.x-k8s.io version the API server is spoken to in


def plan(
    cluster: str,
    spec: SlurmClusterSpec,
    reading: Reading,
    observed: ObservedCluster,
    *,
    generation: int,
    now: datetime,
    apply_error: str | None = None,
    settings: PlanSettings | None = None,
) -> list[Action]:
    """The writes that make one SlurmCluster's mirrored objects match `reading`.

    Order: Nodes and flavors, then the ClusterQueue (which names the flavors), then deletions (a flavor
    only after the ClusterQueue stopped naming it), then the SlurmCluster's status.
    """
    settings = settings or PlanSettings()
    if isinstance(reading, SlurmUnreachable):
        return _plan_outage(cluster, reading, observed, generation, now)
    wanted = {p.name for p in reading.partitions}
    if spec.partitions:
        wanted &= set(spec.partitions)
    mirrored = [p for p in reading.partitions if p.name in wanted][:MAX_STATUS_PARTITIONS]
    queued = mirrored[: settings.max_flavors]
    kueue = settings.kueue_version

    actions: list[Action] = []
    for p in mirrored:
        actions += _plan_node(cluster, p, observed, now)
    for p in queued:
        body = desired.build_flavor(cluster, p.name, kueue)
        current = observed.flavors.get(body["metadata"]["name"])
        if current is None or flavor_view(current) != flavor_view(body):
            actions.append(Apply(flavor_ref(body["metadata"]["name"], kueue), body, reason="flavor"))
    queue = desired.build_cluster_queue(cluster, spec, queued, kueue)
    queue_name = queue["metadata"]["name"]
    current_queue = observed.cluster_queues.get(queue_name)
    if current_queue is None or cluster_queue_view(current_queue) != cluster_queue_view(queue):
        actions.append(Apply(cluster_queue_ref(queue_name, kueue), queue, reason="quota"))

    node_names = {names.object_name(cluster, p.name) for p in mirrored}
    flavor_names = {names.object_name(cluster, p.name) for p in queued}
    actions += [
        Delete(cluster_queue_ref(n, kueue), "renamed")
        for n in sorted(observed.cluster_queues)
        if n != queue_name
    ]
    actions += [Delete(node_ref(n), "partition gone") for n in sorted(observed.nodes) if n not in node_names]
    actions += [
        Delete(flavor_ref(n, kueue), "partition gone")
        for n in sorted(observed.flavors)
        if n not in flavor_names
    ]

    notes = []
    missing = sorted(set(spec.partitions) - {p.name for p in reading.partitions})
    if missing:
        notes.append(f"not in Slurm: {', '.join(missing)}")
    if len(queued) < len(mirrored):
        notes.append(f"only the first {len(queued)} partitions fit one ClusterQueue")
    synced = (
        _condition(SYNCED, False, "ApplyFailed", apply_error[:1000], generation)
        if apply_error
        else _condition(
            SYNCED, True, "Mirrored", "; ".join([f"{len(mirrored)} partitions mirrored", *notes]), generation
        )
    )
    reachable = _condition(
        REACHABLE, True, "SlurmAnswered", f"Slurm {reading.slurm_version} ({reading.source})", generation
    )
    status = SlurmClusterStatus(
        observed_generation=generation,
        conditions=_conditions(observed.status, [reachable, synced], now),
        last_sync_time=observed.status.last_sync_time if observed.status else None,
        slurm_version=reading.slurm_version,
        openapi_version=_openapi_version(reading.source),
        partitions=[build_partition_status(p) for p in mirrored],
    )
    actions += _plan_status(cluster, status, observed.status, now, settings, force=bool(actions))
    return actions


def plan_orphans(
    clusters: Collection[str], observed: ObservedObjects, kueue_version: str = "v1beta2"
) -> list[Action]:
    """Deletions of every object labelled with a cluster that no SlurmCluster has any more."""
    known = {names.label_value(c) for c in clusters}
    actions: list[Action] = []
    for label, objects in sorted(observed.by_cluster.items()):
        if label in known:
            continue
        actions += [
            Delete(cluster_queue_ref(n, kueue_version), "SlurmCluster gone")
            for n in sorted(objects.cluster_queues)
        ]
        actions += [Delete(node_ref(n), "SlurmCluster gone") for n in sorted(objects.nodes)]
        actions += [
            Delete(flavor_ref(n, kueue_version), "SlurmCluster gone") for n in sorted(objects.flavors)
        ]
    return actions


# --- pieces ---
def readiness(p: PartitionSnapshot) -> tuple[bool, str, str]:
    """(ready, reason, message) of the virtual Node of a partition."""
    if p.state != PartitionState.UP:
        return (
            False,
            f"SlurmPartition{p.state.value.title()}",
            f"partition {p.name} is {p.state.value} in Slurm",
        )
    if p.total.nodes == 0:
        return False, "NoNodesInService", f"partition {p.name} has no node in service"
    return True, "SlurmPartitionUp", f"partition {p.name} is UP with {p.total.nodes} nodes in service"


def _plan_node(cluster: str, p: PartitionSnapshot, observed: ObservedCluster, now: datetime) -> list[Action]:
    main = desired.build_node(cluster, p.name)
    name = main["metadata"]["name"]
    current = observed.nodes.get(name)
    out: list[Action] = []
    if current is None or node_main_view(current) != node_main_view(main):
        out.append(Apply(node_ref(name), main, reason="node"))
    ready, reason, message = readiness(p)
    condition = desired.build_ready_condition(ready, reason, message, _since(current, ready, now))
    status = desired.build_node_status(cluster, p.name, desired.node_resources(p.total), condition)
    if current is None or node_status_view(current) != node_status_view(status):
        out.append(Apply(node_ref(name), status, subresource="status", reason="capacity"))
    return out


def _plan_outage(
    cluster: str, reading: SlurmUnreachable, observed: ObservedCluster, generation: int, now: datetime
) -> list[Action]:
    actions: list[Action] = []
    message = f"Slurm cluster {cluster} is unreachable; capacity is the last known"
    for name, current in sorted(observed.nodes.items()):
        annotations = (current.get("metadata") or {}).get("annotations") or {}
        partition = annotations.get(names.ANNOTATION_PARTITION) or name
        condition = desired.build_ready_condition(
            False, "SlurmUnreachable", message, _since(current, False, now)
        )
        body = desired.build_node_status(cluster, partition, node_capacity(current), condition)
        body["metadata"]["name"] = name
        if node_status_view(current) != node_status_view(body):
            actions.append(Apply(node_ref(name), body, subresource="status", reason="not ready"))
    previous = observed.status or SlurmClusterStatus()
    conditions = [
        _condition(REACHABLE, False, "SlurmUnreachable", reading.message[:1000], generation),
        _condition(SYNCED, False, "SlurmUnreachable", "keeping the last mirrored capacity", generation),
    ]
    kept = previous.model_copy(
        update={
            "observed_generation": generation,
            "conditions": _conditions(observed.status, conditions, now),
        }
    )
    if kept != previous:
        actions.append(_status_action(cluster, kept))
    return actions


def _plan_status(
    cluster: str,
    status: SlurmClusterStatus,
    current: SlurmClusterStatus | None,
    now: datetime,
    settings: PlanSettings,
    *,
    force: bool,
) -> list[Action]:
    last = current.last_sync_time if current else None
    stale = last is None or now - last >= timedelta(seconds=settings.status_refresh_seconds)
    if not force and not stale and status == current:
        return []
    return [_status_action(cluster, status.model_copy(update={"last_sync_time": _second(now)}))]


def _status_action(cluster: str, status: SlurmClusterStatus) -> Apply:
    dumped = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    for partition in dumped.get("partitions", []):
        for kind in ("total", "idle"):
            if not partition[kind].get("gpus"):
                # server-side apply turns an empty map into null, which the CRD refuses: leave it out
                partition[kind].pop("gpus", None)
    body = {
        "apiVersion": SLURM_CLUSTERS.api_version,
        "kind": SLURM_CLUSTERS.kind,
        "metadata": {"name": cluster},
        "status": dumped,
    }
    return Apply(slurm_cluster_ref(cluster), body, subresource="status", reason="status")


def build_partition_status(p: PartitionSnapshot) -> PartitionStatus:
    return PartitionStatus(
        name=p.name,
        state=p.state,
        total=_capacity(p.total),
        idle=_capacity(p.idle),
        running_jobs=p.running_jobs,
        pending_jobs=p.pending_jobs,
        max_time_minutes=p.max_time_minutes,
    )


def _capacity(r: Resources) -> PartitionCapacity:
    return PartitionCapacity(nodes=r.nodes, cpus=r.cpus, memory_mib=r.memory_mib, gpus=dict(r.gpus))


def _condition(type_: str, ok: bool, reason: str, message: str, generation: int) -> Condition:
    return Condition(
        type=type_,
        status=ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=datetime(1970, 1, 1, tzinfo=UTC),  # set_condition decides the real one
    )


def _conditions(current: SlurmClusterStatus | None, new: list[Condition], now: datetime) -> list[Condition]:
    out = list(current.conditions) if current else []
    for c in new:
        out = set_condition(out, c, _second(now))
    return out


def _since(current: Mapping[str, Any] | None, ready: bool, now: datetime) -> str:
    """The Ready condition's transition time: kept while its status stays, else now."""
    previous = ready_condition(current) if current else None
    if (
        previous
        and previous.get("status") == ("True" if ready else "False")
        and previous.get("lastTransitionTime")
    ):
        return str(previous["lastTransitionTime"])
    return _second(now).strftime("%Y-%m-%dT%H:%M:%SZ")


def _second(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(microsecond=0)


def _openapi_version(source: str) -> str | None:
    """v0.0.38 for "openapi/v0.0.38", v0.0.42 for "data_parser/v0.0.42"."""
    tail = source.rsplit("/", 1)[-1]
    return tail if tail.startswith("v") else None
