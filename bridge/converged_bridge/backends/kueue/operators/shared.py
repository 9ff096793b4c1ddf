"""The shared filesystem in a step's pods: a PersistentVolumeClaim of the step's namespace, mounted at
the same path as on the Slurm nodes (pure).

The claim is the namespace's, made by the site admin and bound to a PersistentVolume the admin made
(a `local` or hostPath PV, NFS, CephFS, ...): Pod Security checks pods, not PersistentVolumes, so a
namespace enforcing `restricted` (or `baseline`, which refuse hostPath volumes in pods) still reaches
a node's directory that way. Pods never mount hostPath themselves: one way in, which every Pod Security
level admits.

A setting names them as comma-separated `PATH` or `PATH=CLAIM`; a bare PATH mounts the claim
`converged-shared` (DEFAULT_CLAIM), so one shared directory needs no claim name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_CLAIM = "converged-shared"
_CLAIM_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class SharedVolume:
    """The claim `claim` of the step's namespace, mounted at `path` in every pod."""

    path: str
    claim: str = DEFAULT_CLAIM


def parse_shared_volumes(text: str) -> tuple[SharedVolume, ...]:
    """`PATH[=CLAIM],...` (see the module docstring); ValueError naming every problem at once."""
    volumes: list[SharedVolume] = []
    problems: list[str] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        path, _, claim = entry.partition("=")
        path, claim = path.strip().rstrip("/") or "/", claim.strip() or DEFAULT_CLAIM
        if not path.startswith("/"):
            problems.append(f"{entry}: the path must be absolute")
        if not _CLAIM_NAME.match(claim):
            problems.append(f"{entry}: {claim} is not a PersistentVolumeClaim name")
        volumes.append(SharedVolume(path, claim))
    for claim in sorted({v.claim for v in volumes}):
        paths = [v.path for v in volumes if v.claim == claim]
        if len(paths) > 1:
            problems.append(
                f"{', '.join(paths)} all name the claim {claim}: give each path its own (PATH=CLAIM)"
            )
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(volumes)


def build_shared_mounts(volumes: tuple[SharedVolume, ...]) -> list[dict[str, Any]]:
    """A container's volumeMounts of the shared filesystem."""
    return [{"name": f"shared-{i}", "mountPath": v.path} for i, v in enumerate(volumes)]


def build_shared_volumes(volumes: tuple[SharedVolume, ...]) -> list[dict[str, Any]]:
    """A pod's volumes of the shared filesystem: the namespace's claims."""
    return [
        {"name": f"shared-{i}", "persistentVolumeClaim": {"claimName": v.claim}}
        for i, v in enumerate(volumes)
    ]
