"""What plan() asks for: server-side applies and deletions of named objects (pure data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from converged_bridge.kube.kueue_api import kueue_kinds
from converged_bridge.wire import NODES, SLURM_CLUSTERS, Kind


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Where an object lives in the API: its kind, name and namespace."""

    kind: Kind
    name: str
    namespace: str | None = None

    @property
    def plural(self) -> str:
        return self.kind.plural

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind.plural}.{self.kind.group or 'core'} {where}{self.name}"


def node_ref(name: str) -> ObjectRef:
    return ObjectRef(NODES, name)


def flavor_ref(name: str, kueue_version: str) -> ObjectRef:
    return ObjectRef(kueue_kinds(kueue_version)["resourceflavors"], name)


def cluster_queue_ref(name: str, kueue_version: str) -> ObjectRef:
    return ObjectRef(kueue_kinds(kueue_version)["clusterqueues"], name)


def slurm_cluster_ref(name: str) -> ObjectRef:
    return ObjectRef(SLURM_CLUSTERS, name)


@dataclass(frozen=True, slots=True)
class Apply:
    """Server-side apply `body` (the complete set of fields the daemon owns) to the object or its status."""

    ref: ObjectRef
    body: dict[str, Any]
    subresource: str | None = None  # "status" for the status subresource
    reason: str = ""  # why: shown in logs


@dataclass(frozen=True, slots=True)
class Delete:
    ref: ObjectRef
    reason: str = ""


Action = Apply | Delete
