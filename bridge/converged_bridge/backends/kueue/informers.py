"""What the Kueue unit watches: one informer per operator kind (converged's objects only), one of
Workloads, one of the steps' pods and one of Namespaces (their run-as annotations); and the indexes
the unit's plans read from them (by step UID, by owner UID). No request per cycle: each informer LISTs
once and then WATCHes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from converged_bridge.backends.kueue.operators import OPERATORS
from converged_bridge.kube.informer import Informer, InformerSettings
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.wire import MANAGED_LABEL, MANAGED_VALUE, NAMESPACES, PODS, STEP_UID_LABEL, Kind


@dataclass(frozen=True)
class KueueInformers:
    kinds: Mapping[str, Informer]  # Kind.kind -> informer of converged's objects of that kind
    workloads: Informer
    pods: Informer
    namespaces: Informer

    def all(self) -> list[Informer]:
        return [*self.kinds.values(), self.workloads, self.pods, self.namespaces]

    def synced(self, wait: float = 0.0) -> bool:
        """Every informer has its first LIST (a unit must not plan from part of the picture), waiting
        up to `wait` seconds in all for the ones that have not."""
        deadline = time.monotonic() + wait
        return all(i.synced.wait(max(0.0, deadline - time.monotonic())) for i in self.all())

    def served(self) -> frozenset[str]:
        """The operator kinds (Kind.kind) the API server serves, as the last LIST of each said."""
        return frozenset(name for name, informer in self.kinds.items() if not informer.absent)

    def objects_by_step(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Kind.kind -> step UID -> object, from the caches."""
        return {name: index_by_step(informer.items()) for name, informer in self.kinds.items()}

    def workloads_by_owner(self) -> dict[str, dict[str, Any]]:
        return index_workloads_by_owner(self.workloads.items())

    def pods_by_step(self) -> dict[str, list[dict[str, Any]]]:
        return index_pods_by_step(self.pods.items())

    def stop(self) -> None:
        for informer in self.all():
            informer.stop()


def start_kueue_informers(
    objects: KubeObjects,
    workloads: Kind,
    settings: InformerSettings | None = None,
    on_change: Callable[[], None] | None = None,
) -> KueueInformers:
    """Make the informers and start their threads; `on_change` is called when a step's object,
    Workload or pod changed."""
    informers = build_kueue_informers(objects, workloads, settings, on_change)
    for informer in informers.all():
        informer.start()
    return informers


def build_kueue_informers(
    objects: KubeObjects,
    workloads: Kind,
    settings: InformerSettings | None = None,
    on_change: Callable[[], None] | None = None,
) -> KueueInformers:
    """The informers, not started."""
    kinds = {o.kind.kind: o.kind for o in OPERATORS.values()} | {
        o.workload_owner.kind: o.workload_owner for o in OPERATORS.values()
    }
    managed = f"{MANAGED_LABEL}={MANAGED_VALUE}"
    return KueueInformers(
        kinds={
            name: Informer(objects, kind, label_selector=managed, settings=settings, on_change=on_change)
            for name, kind in kinds.items()
        },
        workloads=Informer(objects, workloads, settings=settings, on_change=on_change),
        pods=Informer(objects, PODS, label_selector=STEP_UID_LABEL, settings=settings, on_change=on_change),
        namespaces=Informer(objects, NAMESPACES, settings=settings),
    )


def index_by_step(objects: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Step UID (its label) -> object, for the objects that carry one. Pure."""
    out: dict[str, dict[str, Any]] = {}
    for obj in objects:
        uid = (obj.get("metadata", {}).get("labels") or {}).get(STEP_UID_LABEL)
        if uid:
            out[uid] = obj
    return out


def index_workloads_by_owner(workloads: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Owner UID -> Workload. Pure."""
    out: dict[str, dict[str, Any]] = {}
    for wl in workloads:
        for owner in wl.get("metadata", {}).get("ownerReferences") or []:
            out[owner["uid"]] = wl
    return out


def index_pods_by_step(pods: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Step UID -> its pods. Pure."""
    out: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        uid = (pod.get("metadata", {}).get("labels") or {}).get(STEP_UID_LABEL)
        if uid:
            out.setdefault(uid, []).append(pod)
    return out
