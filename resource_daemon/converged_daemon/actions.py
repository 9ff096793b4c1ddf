"""What plan() asks for: server-side applies and deletions of named objects (pure data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Where an object lives in the API: group ("" for core), version, plural, namespace, name."""

    group: str
    version: str
    plural: str
    name: str
    namespace: str | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.plural}.{self.group or 'core'} {where}{self.name}"


def node_ref(name: str) -> ObjectRef:
    return ObjectRef("", "v1", "nodes", name)


def flavor_ref(name: str) -> ObjectRef:
    return ObjectRef("kueue.x-k8s.io", "v1beta1", "resourceflavors", name)


def cluster_queue_ref(name: str) -> ObjectRef:
    return ObjectRef("kueue.x-k8s.io", "v1beta1", "clusterqueues", name)


def slurm_cluster_ref(name: str) -> ObjectRef:
    return ObjectRef("converged.dev", "v1alpha1", "slurmclusters", name)


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
