"""Leader election on a coordination.k8s.io Lease: the decision, from what the Lease says (pure).

Like client-go's leaderelection, expiry is judged by how long *this* process has seen the record
unchanged (`observed_for`), never by comparing another host's clock with ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Step(StrEnum):
    CREATE = "create"  # no Lease yet
    RENEW = "renew"  # we hold it
    ACQUIRE = "acquire"  # free, released or expired
    FOLLOW = "follow"  # someone else holds it


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str | None
    renew_time: str | None
    duration_seconds: int
    transitions: int
    resource_version: str | None

    @property
    def key(self) -> tuple[str | None, str | None]:
        """What changes each time the holder renews."""
        return self.holder, self.renew_time


def parse_lease(obj: Mapping[str, Any]) -> LeaseRecord:
    spec = obj.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        renew_time=spec.get("renewTime"),
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=(obj.get("metadata") or {}).get("resourceVersion"),
    )


def decide(record: LeaseRecord | None, me: str, observed_for: float) -> Step:
    """What to do with the Lease; `observed_for` is how long we have seen `record.key` unchanged."""
    if record is None:
        return Step.CREATE
    if record.holder == me:
        return Step.RENEW
    if record.holder is None or observed_for >= record.duration_seconds:
        return Step.ACQUIRE
    return Step.FOLLOW


def micro_time(now: datetime) -> str:
    """A metav1.MicroTime."""
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_lease(
    name: str,
    namespace: str,
    me: str | None,
    now: datetime,
    duration_seconds: int,
    previous: LeaseRecord | None,
) -> dict[str, Any]:
    """The Lease after a create, renew, acquire (me) or release (me None; expires at once)."""
    taking_over = previous is not None and previous.holder != me and me is not None
    transitions = (previous.transitions if previous else 0) + (1 if taking_over else 0)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if previous and previous.resource_version:
        metadata["resourceVersion"] = previous.resource_version
    spec: dict[str, Any] = {
        "holderIdentity": me,
        "leaseDurationSeconds": duration_seconds if me else 1,
        "renewTime": micro_time(now),
        "leaseTransitions": transitions,
    }
    if previous is None or taking_over:
        spec["acquireTime"] = micro_time(now)
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
