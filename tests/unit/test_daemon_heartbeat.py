"""Mirror.heartbeat(): which virtual Nodes' Leases a daemon renews.

The Kubernetes API is our own edge here (KubeObjects): an in-memory store stands in for it. Slurm is
unreachable in these cycles, so the cycle only keeps the Nodes it finds and heartbeats them.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.errors import BackendError
from converged_bridge.kube.kueue_api import KueueApi
from converged_bridge.wire import Kind
from converged_daemon import names
from converged_daemon.mirror import Mirror, MirrorSettings
from tests.unit.clocks import ManualClock


class Objects:
    """KubeObjects' surface over a dict; records every write as (verb, plural, name)."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []

    def list_objects(self, kind: Kind, **_: Any) -> list[dict[str, Any]]:
        plural = kind.plural
        return [o for (p, _), o in self.store.items() if p == plural]

    def apply(self, kind: Kind, name: str, body: dict[str, Any], **kw: Any) -> Any:
        plural = kind.plural
        self.writes.append(("apply", plural, name))
        obj = self.store.setdefault((plural, name), {"metadata": {"name": name, "uid": str(uuid.uuid4())}})
        obj.update({k: v for k, v in body.items() if k != "metadata"})
        uid = obj["metadata"].get("uid") or str(uuid.uuid4())
        obj["metadata"] = {**body.get("metadata", {}), "uid": uid, "name": name}
        return obj

    def delete(self, kind: Kind, name: str, **_: Any) -> None:
        plural = kind.plural
        self.writes.append(("delete", plural, name))
        self.store.pop((plural, name), None)

    def add_cluster(self, cluster: str) -> None:
        self.store["slurmclusters", cluster] = {
            "metadata": {"name": cluster, "generation": 1},
            "spec": {"transport": "restd", "restd": {"url": "http://slurm:6820", "user": "u"}},
        }

    def add_node(self, cluster: str, partition: str = "cpu") -> str:
        name = names.object_name(cluster, partition)
        self.store["nodes", name] = {
            "metadata": {
                "name": name,
                "uid": str(uuid.uuid4()),
                "labels": {names.LABEL_CLUSTER: cluster, names.LABEL_MANAGED_BY: names.MANAGED_BY},
                "annotations": {names.ANNOTATION_PARTITION: partition},
            },
            "status": {"capacity": {"cpu": "4"}},
        }
        return name

    def leases(self) -> dict[str, str]:
        """Lease name -> the uid of the Node that owns it."""
        return {
            name: o["metadata"]["ownerReferences"][0]["uid"]
            for (plural, name), o in self.store.items()
            if plural == "leases"
        }


def unreachable(name: str, spec: SlurmClusterSpec, read_secret: Any) -> Any:
    raise BackendError("connection refused")


def mirror(
    objects: Objects, clusters: tuple[str, ...] = (), renew: float = 3600.0, clock: ManualClock | None = None
) -> Mirror:
    """A daemon started on a machine that booted seconds ago (unless `clock` says otherwise)."""
    clock = clock or ManualClock()
    settings = MirrorSettings(clusters=clusters, node_lease_renew=renew)
    return Mirror(
        objects,  # type: ignore[arg-type]
        lambda *a: "",
        settings,
        transport_factory=unreachable,
        kueue=KueueApi(objects, version="v1beta2"),  # type: ignore[arg-type]
        clock=clock.wall,
        monotonic_clock=clock.monotonic,
    )


@pytest.fixture
def objects() -> Objects:
    o = Objects()
    for cluster in ("ours", "theirs"):
        o.add_cluster(cluster)
        o.add_node(cluster)
    return o


def test_a_daemon_renews_only_the_nodes_of_the_clusters_it_mirrors(objects: Objects) -> None:
    m = mirror(objects, clusters=("ours",))
    m.cycle()
    assert m.heartbeat() == 1
    assert set(objects.leases()) == {"slurm-ours-cpu"}


def test_an_unfiltered_daemon_renews_every_cluster_once_per_period(objects: Objects) -> None:
    clock = ManualClock()
    m = mirror(objects, renew=10.0, clock=clock)
    m.cycle()
    assert m.heartbeat() == 2 and m.heartbeat() == 0  # the next is due in node_lease_renew seconds
    assert set(objects.leases()) == {"slurm-ours-cpu", "slurm-theirs-cpu"}
    clock.advance(9.9)
    assert m.heartbeat() == 0
    clock.advance(0.1)
    assert m.heartbeat() == 2


def test_a_daemon_started_at_boot_renews_at_once() -> None:
    """A monotonic clock of 0.0 is a real reading (a time namespace just made), not "never"."""
    objects = Objects()
    objects.add_cluster("ours")
    objects.add_node("ours")
    m = mirror(objects, renew=10.0, clock=ManualClock(start=0.0))
    m.cycle()
    assert m.heartbeat() == 1


def test_a_node_deleted_behind_our_back_is_forgotten(objects: Objects) -> None:
    m = mirror(objects, clusters=("ours",), renew=0.0)  # every heartbeat() call renews
    m.cycle()
    m.heartbeat()
    objects.store.pop(("nodes", "slurm-ours-cpu"))
    m.cycle()
    objects.writes.clear()
    assert m.heartbeat() == 0 and objects.writes == []


def test_a_recreated_node_gets_a_lease_naming_its_new_uid_at_once(objects: Objects) -> None:
    m = mirror(objects, clusters=("ours",))
    m.cycle()
    m.heartbeat()
    old = objects.leases()["slurm-ours-cpu"]
    objects.add_node("ours")  # deleted and created again: a new uid
    m.cycle()
    assert m.heartbeat() == 1  # not node_lease_renew later: the old Lease's owner is gone
    new = objects.leases()["slurm-ours-cpu"]
    assert new != old and new == objects.store["nodes", "slurm-ours-cpu"]["metadata"]["uid"]
