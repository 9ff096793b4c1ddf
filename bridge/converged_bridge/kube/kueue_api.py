"""Which `kueue.x-k8s.io` version to speak, negotiated with the API server as slurmrestd's is.

Kueue serves v1beta2 since 0.15 (the storage version since 0.16) and stops serving v1beta1 in 0.20.
Without Kueue's conversion webhook the API server drops every field renamed between the two, so
converged writes and reads the newest version served, v1beta1 only where it is the only one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from converged_bridge.errors import PermanentBackendError
from converged_bridge.kube.core import NotFound
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.wire import KUEUE_GROUP, KUEUE_VERSIONS, Kind


def choose_kueue_version(served: Sequence[str]) -> str | None:
    """The version converged speaks: the first of KUEUE_VERSIONS the server serves (pure)."""
    return next((v for v in KUEUE_VERSIONS if v in served), None)


def parse_group_versions(discovery: dict[str, Any]) -> list[str]:
    """The versions an APIGroup discovery document (`GET /apis/<group>`) lists."""
    return [str(v.get("version")) for v in discovery.get("versions") or [] if v.get("version")]


def kueue_kinds(version: str) -> dict[str, Kind]:
    return {
        "workloads": Kind(KUEUE_GROUP, version, "workloads", "Workload"),
        "resourceflavors": Kind(KUEUE_GROUP, version, "resourceflavors", "ResourceFlavor"),
        "clusterqueues": Kind(KUEUE_GROUP, version, "clusterqueues", "ClusterQueue"),
        "localqueues": Kind(KUEUE_GROUP, version, "localqueues", "LocalQueue"),
    }


class KueueApi:
    """Kueue's kinds at the negotiated version; asks the API server once, on first use."""

    def __init__(self, objects: KubeObjects, version: str | None = None) -> None:
        self._objects = objects
        self._version = version
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        with self._lock:
            if self._version is None:
                self._version = self._negotiate()
            return self._version

    def _negotiate(self) -> str:
        try:
            discovery = self._objects.core.request("discovery", "GET", f"/apis/{KUEUE_GROUP}")
        except NotFound as e:
            raise PermanentBackendError(
                f"this cluster does not serve {KUEUE_GROUP}: is Kueue installed?"
            ) from e
        served = parse_group_versions(discovery)
        chosen = choose_kueue_version(served)
        if chosen is None:
            raise PermanentBackendError(
                f"{KUEUE_GROUP} serves {', '.join(served) or 'no version'}; converged speaks "
                f"{', '.join(KUEUE_VERSIONS)}"
            )
        return chosen

    def kind(self, plural: str) -> Kind:
        return kueue_kinds(self.version)[plural]

    def workloads(self) -> Kind:
        return self.kind("workloads")

    def resource_flavors(self) -> Kind:
        return self.kind("resourceflavors")

    def cluster_queues(self) -> Kind:
        return self.kind("clusterqueues")

    def local_queues(self) -> Kind:
        return self.kind("localqueues")
