"""The Kueue backend unit: the operator kinds, Workloads, the steps' pods and Namespaces as informers
keep them (one LIST each, then WATCHes: no request per cycle); the pure plan; creating and deleting
the steps' operator objects. A StepAllocation is one Job among them (its pod runs the agent); its
steps are handed to that agent (`allocation.keeper`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from converged_bridge.allocation.handover import prepare_spool, prepare_user_dir, write_warm_launcher
from converged_bridge.allocation.keeper import AllocationKeeper, allocation_name
from converged_bridge.allocation.paths import AllocationPaths
from converged_bridge.allocation.plan import StepSummary
from converged_bridge.allocation.steps import AllocationJob
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import Backend, BackendKind, BackendRef, WorkflowStep
from converged_bridge.backends.kueue.allocation import (
    build_allocation_job,
    build_grouped_step_script,
    build_warm_launcher,
)
from converged_bridge.backends.kueue.informers import KueueInformers, start_kueue_informers
from converged_bridge.backends.kueue.intents import CreateAllocationJob, CreateObject, DeleteObject
from converged_bridge.backends.kueue.operators import OPERATORS, KueueSite
from converged_bridge.backends.kueue.operators.common import RunAs
from converged_bridge.backends.kueue.outcome import map_kueue_status
from converged_bridge.backends.kueue.plan import KueueView, plan_kueue_cleanup, plan_kueue_step
from converged_bridge.errors import BackendError, InvalidStep, PermanentBackendError
from converged_bridge.kube.core import AlreadyExists
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.reconcile.intents import DONE, BackendIntent, Executed, Intent
from converged_bridge.reconcile.status import StatusTiming, plan_failure
from converged_bridge.timing import WallClock, utc_now
from converged_bridge.wire import (
    JOBS,
    KUEUE_GROUP,
    RUN_AS_GROUP_ANNOTATION,
    RUN_AS_NAME_ANNOTATION,
    RUN_AS_USER_ANNOTATION,
    Kind,
)

log = logging.getLogger("converged.controller.kueue")

SYNC_WAIT = 20.0  # seconds the first observation waits for the informers' first LISTs (then: not observed)
CREATED_KEPT_CYCLES = 30  # an object this process created counts as there this long before the watch shows it


class KueueBackend:
    backend = Backend.KUEUE
    queries = 0  # its LISTs are Kubernetes requests: KubeCore counts them

    def __init__(
        self,
        objects: KubeObjects,
        site: KueueSite,
        *,
        workloads: Callable[[], Kind] = lambda: Kind(KUEUE_GROUP, "v1beta1", "workloads", "Workload"),
        clock: WallClock = utc_now,
        allocation_spool: str | None = None,
        sync_wait: float = SYNC_WAIT,
        wake: Callable[[], None] | None = None,
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
        self._refused: dict[str, str] = {}  # allocation uid -> why the API server refused its Job
        self._informers: KueueInformers | None = None  # started at the first observation
        self._sync_wait = sync_wait
        self._wake = wake  # told (on an informer's thread) when a step's object, Workload or pod changed
        self._created: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}  # (kind, uid) -> (object,
        # the observation it was created after): what this process created and the watch has not shown
        self._keeper = AllocationKeeper(self, spool_root=allocation_spool)

    # --- observe ---
    def observe(self, steps: Sequence[WorkflowStep], allocations: Sequence[StepAllocation] = ()) -> None:
        """The informers' caches of the operator kinds, Workloads, step pods and Namespaces (each one
        LIST, then a WATCH: no request per cycle); then the allocations' hand-over directories."""
        try:
            self._observe()
        except BackendError as e:
            log.warning("observing Kubernetes-backed steps failed: %s", e)
            self._observed = False
        self._keeper.observe(allocations)

    @property
    def informers(self) -> KueueInformers | None:
        """The informers behind the observations (None until the first)."""
        return self._informers

    def _observe(self) -> None:
        if self._informers is None:
            workloads = self._workload_kind()
            self._informers = start_kueue_informers(self._objects, workloads, on_change=self._wake)
        informers = self._informers
        self._observations += 1
        wait, self._sync_wait = self._sync_wait, 0.0  # only the first observation waits (a LIST that
        # keeps failing, e.g. forbidden, must not hold every cycle)
        if not informers.synced(wait=wait):
            self._observed = False  # never plan from part of the picture: wait for every first LIST
            return
        by_kind = informers.objects_by_step()
        for (kind, uid), (obj, since) in list(self._created.items()):
            if uid in by_kind.get(kind, {}) or self._observations - since > CREATED_KEPT_CYCLES:
                del self._created[(kind, uid)]  # the watch brought it (or never will: list it as it is)
            else:
                by_kind.setdefault(kind, {})[uid] = obj
        self._served = informers.served()
        self._objects_by_kind = by_kind
        self._workloads = informers.workloads_by_owner()
        self._pods = informers.pods_by_step()
        self._run_as = map_run_as(informers.namespaces.items())
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
        if allocation_name(step):
            return self._keeper.decide_step(step, timing)
        return plan_kueue_step(step, self._view(step, timing))

    def decide_cleanup(self, step: WorkflowStep) -> list[Intent] | None:
        if allocation_name(step):
            return (
                self._keeper.decide_step_cleanup(step, StatusTiming(now=self._clock()))
                if self._observed
                else []
            )
        # Unobserved, nothing is deleted here: the object is owned by the step (ownerReferences), so
        # the garbage collector deletes it once the step is gone.
        if not self._observed:
            return []
        return plan_kueue_cleanup(step, self._view(step, StatusTiming(now=self._clock())))

    # --- execute ---
    def execute(self, step: WorkflowStep, intent: BackendIntent) -> Executed:
        handed = self._keeper.execute(intent)
        if handed is not None:
            return handed
        if isinstance(intent, CreateObject):
            refused = self._create(intent.kind, intent.body, intent.namespace, step.metadata.uid or "")
            if refused is None:
                return DONE
            message = f"the API server refused the {intent.kind.kind}: {refused}"
            return Executed(then=tuple(plan_failure(step, "CreateRejected", message, self._clock())))
        if isinstance(intent, DeleteObject):
            return self._delete(intent)
        raise TypeError(f"the Kueue backend cannot carry out {type(intent).__name__}")

    def _create(self, kind: Kind, body: dict[str, Any], namespace: str, uid: str) -> str | None:
        """Create the object of the step or allocation `uid`; None when it exists now (made by this call
        or by an earlier attempt or process: the next listing shows it), else why the API server refused."""
        try:
            created = self._objects.create(kind, body, namespace=namespace)
        except AlreadyExists:
            created = body
        except PermanentBackendError as e:
            return str(e)
        self._objects_by_kind.setdefault(kind.kind, {})[uid] = created
        self._created[(kind.kind, uid)] = (created, self._observations)  # until the watch brings it
        return None

    def _delete(self, intent: DeleteObject) -> Executed:
        """Delete it and, after it, what it owns (pods, a JobSet's Jobs)."""
        self._objects.delete(intent.kind, intent.name, namespace=intent.namespace, propagation="Background")
        return DONE

    # --- allocations (allocation.keeper asks these of its backend) ---
    def decide_allocation(
        self, alloc: StepAllocation, steps: Sequence[StepSummary], timing: StatusTiming
    ) -> list[Intent] | None:
        return self._keeper.decide_allocation(alloc, steps, timing)

    def decide_allocation_cleanup(
        self, alloc: StepAllocation, steps: Sequence[StepSummary], timing: StatusTiming
    ) -> list[Intent] | None:
        # unobserved, nothing to do: its Job is owned by the allocation, the garbage collector deletes it
        return self._keeper.decide_allocation_cleanup(alloc, steps, timing) if self._observed else []

    def execute_allocation(self, alloc: StepAllocation, intent: BackendIntent) -> Executed:
        handed = self._keeper.execute(intent)
        if handed is not None:
            return handed
        if isinstance(intent, CreateAllocationJob):
            return self._create_allocation(alloc, intent)
        if isinstance(intent, DeleteObject):
            return self._delete(intent)
        raise TypeError(f"the Kueue backend cannot carry out {type(intent).__name__} for an allocation")

    def _create_allocation(self, alloc: StepAllocation, intent: CreateAllocationJob) -> Executed:
        uid = alloc.metadata.uid or ""
        prepare_spool(intent.paths)
        for path in (intent.paths.state, intent.paths.logs):  # where the agent, as the pod's user, writes
            prepare_user_dir(path, intent.run_as_uid)
        if intent.warm_launcher is not None:
            write_warm_launcher(intent.paths, intent.warm_launcher)
        refused = self._create(JOBS, intent.body, intent.namespace, uid)
        if refused is None:
            return DONE
        self._refused[uid] = f"the API server refused the allocation's Job: {refused}"
        return Executed(decide_again=True)

    def observed(self, alloc: StepAllocation) -> bool:
        return self._observed

    def _allocation_job(self, alloc: StepAllocation) -> dict[str, Any] | None:
        return self._objects_by_kind.get(JOBS.kind, {}).get(alloc.metadata.uid or "")

    def job_of(self, alloc: StepAllocation) -> AllocationJob | None:
        obj = self._allocation_job(alloc)
        if obj is None:
            return None
        workload = self._workloads.get(obj["metadata"].get("uid", ""))
        out = map_kueue_status(JOBS.kind, obj, workload, self._pods.get(alloc.metadata.uid or "", []))
        wl_name = (workload or {}).get("metadata", {}).get("name")
        ref = BackendRef.for_object(BackendKind.JOB, str(obj["metadata"]["name"]), wl_name)
        return AllocationJob(out.phase, out.reason, out.message, ref, out.start_time, out.completion_time)

    def submitted_of(self, alloc: StepAllocation) -> BackendRef | None:
        return None  # a Job is created at once: the next listing shows it

    def build_submit(
        self, alloc: StepAllocation, paths: AllocationPaths
    ) -> BackendIntent | tuple[str, str] | None:
        uid = alloc.metadata.uid or ""
        if uid in self._refused:
            return ("CreateRejected", self._refused[uid])
        run_as = self._run_as.get(alloc.metadata.namespace or "")
        site = replace(self._site, run_as=run_as) if run_as else self._site
        try:
            built = build_allocation_job(alloc, site, paths)
        except InvalidStep as e:
            return ("InvalidSpec", f"invalid for Kubernetes: {e}")
        warm = build_warm_launcher(paths) if alloc.spec.warm else None
        namespace = alloc.metadata.namespace or "default"
        return CreateAllocationJob(namespace, built.body, paths, run_as.uid if run_as else None, warm)

    def build_cancel(self, alloc: StepAllocation) -> BackendIntent | None:
        obj = self._allocation_job(alloc)
        if obj is None:
            return None
        return DeleteObject(JOBS, alloc.metadata.namespace or "default", str(obj["metadata"]["name"]))

    def build_step_script(self, step: WorkflowStep, alloc: StepAllocation) -> str:
        return build_grouped_step_script(step)

    def runs_warm(self, step: WorkflowStep, alloc: StepAllocation) -> bool:
        return True  # the pod is the step image, and its steps share its GPUs either way

    def target_of(self, alloc: StepAllocation) -> str:
        queue = alloc.spec.kueue.local_queue if alloc.spec.kueue else None
        return f"{alloc.metadata.namespace}/{queue or self._site.default_local_queue}"

    def agent_log(self, alloc: StepAllocation) -> str | None:
        return None  # the pod's log (kubectl logs)

    # --- the rest of a step's life ---
    def finished(self, step: WorkflowStep) -> None:
        return None

    def forget(self, uid: str) -> None:
        for key in [k for k in self._created if k[1] == uid]:
            del self._created[key]

    def close(self) -> None:
        if self._informers is not None:
            self._informers.stop()


def map_run_as(namespaces: Iterable[Mapping[str, Any]]) -> dict[str, RunAs]:
    """namespace -> who its pods run as, from the admin's run-as annotations; a namespace without a valid
    uid and gid has none (its pods run as their image says, never root). Root (uid 0) is not valid: Pod
    Security `restricted` refuses pods that ask for it. Pure."""
    out: dict[str, RunAs] = {}
    for ns in namespaces:
        meta = ns.get("metadata") or {}
        notes = meta.get("annotations") or {}
        uid, gid = notes.get(RUN_AS_USER_ANNOTATION), notes.get(RUN_AS_GROUP_ANNOTATION)
        if isinstance(uid, str) and uid.isdigit() and int(uid) and isinstance(gid, str) and gid.isdigit():
            name = notes.get(RUN_AS_NAME_ANNOTATION)
            out[str(meta.get("name"))] = RunAs(
                int(uid), int(gid), name if isinstance(name, str) and name else None
            )
    return out
