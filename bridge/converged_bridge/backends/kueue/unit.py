"""The Kueue backend unit: per cycle one LIST per served operator kind, one of Workloads and one of the
steps' pods; the pure plan; creating and deleting the steps' operator objects."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from converged_bridge.api.workflowstep import Backend, WorkflowStep
from converged_bridge.backends.kueue.intents import CreateObject, DeleteObject
from converged_bridge.backends.kueue.operators import OPERATORS, KueueSite
from converged_bridge.backends.kueue.operators.common import RunAs
from converged_bridge.backends.kueue.plan import KueueView, plan_kueue_cleanup, plan_kueue_step
from converged_bridge.errors import BackendError, PermanentBackendError
from converged_bridge.kube.core import AlreadyExists
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.kube.pods import list_pods
from converged_bridge.reconcile.intents import DONE, BackendIntent, Executed, Intent
from converged_bridge.reconcile.status import StatusTiming, plan_failure
from converged_bridge.timing import WallClock, utc_now
from converged_bridge.wire import (
    KUEUE_GROUP,
    MANAGED_LABEL,
    MANAGED_VALUE,
    NAMESPACES,
    RUN_AS_GROUP_ANNOTATION,
    RUN_AS_NAME_ANNOTATION,
    RUN_AS_USER_ANNOTATION,
    STEP_UID_LABEL,
    Kind,
)

log = logging.getLogger("converged.controller.kueue")

SERVED_REFRESH_CYCLES = 30  # which operator kinds are served is probed again this often


class KueueBackend:
    backend = Backend.KUEUE

    def __init__(
        self,
        objects: KubeObjects,
        site: KueueSite,
        *,
        workloads: Callable[[], Kind] = lambda: Kind(KUEUE_GROUP, "v1beta1", "workloads", "Workload"),
        clock: WallClock = utc_now,
    ) -> None:
        self._objects = objects
        self._site = site
        self._workload_kind = workloads
        self._clock = clock
        self._observed = False
        self._observations = 0
        self._served: frozenset[str] | None = None  # operator kinds (Kind.kind) the API server serves
        self._objects_by_kind: dict[str, dict[str, dict[str, Any]]] = {}  # kind -> step uid -> object
        self._workloads: dict[str, dict[str, Any]] = {}  # owner uid -> Workload
        self._pods: dict[str, list[dict[str, Any]]] = {}  # step uid -> pods
        self._run_as: dict[str, RunAs] = {}  # namespace -> who its pods run as

    # --- observe ---
    def observe(self, steps: Sequence[WorkflowStep]) -> None:
        """One LIST per served operator kind, one of Workloads, one of step pods: a constant per cycle."""
        try:
            self._observe()
        except BackendError as e:
            log.warning("observing Kubernetes-backed steps failed: %s", e)
            self._observed = False

    def _observe(self) -> None:
        kinds = {o.kind.kind: o.kind for o in OPERATORS.values()} | {
            o.workload_owner.kind: o.workload_owner for o in OPERATORS.values()
        }
        if self._served is None or self._observations % SERVED_REFRESH_CYCLES == 0:
            self._served = frozenset(name for name, kind in kinds.items() if self._objects.served(kind))
        self._observations += 1
        selector = f"{MANAGED_LABEL}={MANAGED_VALUE}"
        by_kind: dict[str, dict[str, dict[str, Any]]] = {}
        for name in self._served:
            by_kind[name] = {
                o["metadata"]["labels"][STEP_UID_LABEL]: o
                for o in self._objects.list_objects(kinds[name], label_selector=selector)
                if o["metadata"].get("labels", {}).get(STEP_UID_LABEL)
            }
        workloads: dict[str, dict[str, Any]] = {}
        for wl in self._objects.list_objects(self._workload_kind()):
            for owner in wl["metadata"].get("ownerReferences", []):
                workloads[owner["uid"]] = wl
        pods: dict[str, list[dict[str, Any]]] = {}
        for pod in list_pods(self._objects, STEP_UID_LABEL):
            pods.setdefault(pod["metadata"]["labels"][STEP_UID_LABEL], []).append(pod)
        run_as = map_run_as(self._objects.list_objects(NAMESPACES))
        self._objects_by_kind, self._workloads, self._pods, self._run_as = by_kind, workloads, pods, run_as
        self._observed = True

    # --- decide ---
    def _view(self, step: WorkflowStep, timing: StatusTiming) -> KueueView:
        operator = OPERATORS[step.spec.operator]
        uid = step.metadata.uid or ""
        obj = self._objects_by_kind.get(operator.kind.kind, {}).get(uid)
        owner = self._objects_by_kind.get(operator.workload_owner.kind, {}).get(uid)
        owner_uid = (owner or {}).get("metadata", {}).get("uid")
        run_as = self._run_as.get(step.metadata.namespace or "")
        return KueueView(
            site=replace(self._site, run_as=run_as) if run_as else self._site,
            obj=obj,
            workload=self._workloads.get(owner_uid) if owner_uid else None,
            pods=self._pods.get(uid, []),
            timing=timing,
            served_kinds=self._served,
        )

    def decide(self, step: WorkflowStep, timing: StatusTiming) -> list[Intent] | None:
        if not self._observed:
            return None  # nothing observed yet: decide after the next cycle
        return plan_kueue_step(step, self._view(step, timing))

    def decide_cleanup(self, step: WorkflowStep) -> list[Intent] | None:
        # Unobserved, nothing is deleted here: the object is owned by the step (ownerReferences), so
        # the garbage collector deletes it once the step is gone.
        if not self._observed:
            return []
        return plan_kueue_cleanup(step, self._view(step, StatusTiming(now=self._clock())))

    # --- execute ---
    def execute(self, step: WorkflowStep, intent: BackendIntent) -> Executed:
        if isinstance(intent, CreateObject):
            return self._create(step, intent)
        if isinstance(intent, DeleteObject):
            self._objects.delete(
                intent.kind, intent.name, namespace=intent.namespace, propagation="Background"
            )
            return DONE
        raise TypeError(f"the Kueue backend cannot carry out {type(intent).__name__}")

    def _create(self, step: WorkflowStep, intent: CreateObject) -> Executed:
        try:
            created = self._objects.create(intent.kind, intent.body, namespace=intent.namespace)
        except AlreadyExists:
            created = intent.body  # made by an earlier attempt (or process): the next listing shows it
        except PermanentBackendError as e:
            message = f"the API server refused the {intent.kind.kind}: {e}"
            return Executed(then=tuple(plan_failure(step, "CreateRejected", message, self._clock())))
        self._objects_by_kind.setdefault(intent.kind.kind, {})[step.metadata.uid or ""] = created
        return DONE

    # --- the rest of a step's life ---
    def finished(self, step: WorkflowStep) -> None:
        return None

    def forget(self, uid: str) -> None:
        return None

    def close(self) -> None:
        return None


def map_run_as(namespaces: Iterable[Mapping[str, Any]]) -> dict[str, RunAs]:
    """namespace -> who its pods run as, from the admin's run-as annotations; a namespace without a valid
    uid and gid has none (its pods run as their image says). Pure."""
    out: dict[str, RunAs] = {}
    for ns in namespaces:
        meta = ns.get("metadata") or {}
        notes = meta.get("annotations") or {}
        uid, gid = notes.get(RUN_AS_USER_ANNOTATION), notes.get(RUN_AS_GROUP_ANNOTATION)
        if isinstance(uid, str) and uid.isdigit() and isinstance(gid, str) and gid.isdigit():
            name = notes.get(RUN_AS_NAME_ANNOTATION)
            out[str(meta.get("name"))] = RunAs(
                int(uid), int(gid), name if isinstance(name, str) and name else None
            )
    return out
