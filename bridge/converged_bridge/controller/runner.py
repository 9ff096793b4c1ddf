"""The WorkflowStep controller loop.

Reads: one LIST then one WATCH of WorkflowSteps (in a watcher thread), SlurmClusters every
`cluster_refresh` seconds, and one Slurm job listing per cluster per `poll_interval` — never a
request per step. Writes: finalizers, status (only when it changed; a waiting step's new reason
alone at most every `pending_reason_refresh`) and events, all through `apply_intents`. A poll cycle
decides for every unfinished step, applies the plans that end a step first, then all others
(submissions of new steps included: new work never waits for a later cycle), those on
`apply_workers` threads, one step's plan in order on one thread. Runs as a process
(`python -m converged_bridge.controller`) or embedded in another Python process
(`Controller.start()` / `stop()`), from the same code.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import CONTROLLER_LABEL, Backend, Phase, WorkflowStep
from converged_bridge.controller.intents import (
    FINALIZER,
    AddFinalizer,
    CancelSlurmJob,
    CreateObject,
    DeleteObject,
    Emit,
    Intent,
    RemoveFinalizer,
    SubmitSlurmJob,
    WriteStatus,
)
from converged_bridge.controller.slurm_reconcile import SlurmView, plan_slurm_step
from converged_bridge.controller.slurm_shell import (
    build_transport,
    prepare_dir,
    read_log_tail,
    write_private_file,
)
from converged_bridge.controller.status import (
    TERMINAL_PHASES,
    build_status,
    build_status_patch,
    is_finished,
    plan_ends_step,
)
from converged_bridge.errors import BackendError, PermanentBackendError, TransientBackendError
from converged_bridge.kube.access import AlreadyExists, Conflict, KubeAccess, NotFound
from converged_bridge.kueue.builders import MANAGED_LABEL, STEP_UID_LABEL, KueueSite
from converged_bridge.kueue.reconcile import KINDS, OPERATOR_KINDS, KueueView, plan_kueue_step
from converged_bridge.slurm.batch_script import build_secret_env_file
from converged_bridge.slurm.jobs import SlurmJob, index_by_step
from converged_bridge.slurm.transport import SlurmTransport
from converged_bridge.timing import Monotonic, WallClock, due, monotonic, utc_now

log = logging.getLogger("converged.controller")


WATCH_THREAD = "converged-watch"


@dataclass(frozen=True)
class ControllerSettings:
    """How the controller runs. Every field has a command-line flag of the same name."""

    poll_interval: float = 2.0  # seconds between Slurm job listings (one query per cluster)
    pending_reason_refresh: float = 30.0  # seconds: a waiting step's new reason alone is written this rarely
    apply_workers: int = 4  # threads applying a cycle's plans (a burst of new steps); 1: on the loop thread
    cluster_refresh: float = 30.0  # seconds between re-reads of SlurmCluster objects
    namespace: str | None = None  # watch one namespace, or all
    label_selector: str = f"!{CONTROLLER_LABEL}"  # which steps are ours (default: not an embedded run's)
    log_dir: str = "/tmp/converged"  # where Slurm logs go for steps without a workingDir
    watch_timeout: int = 300  # seconds a WATCH stays open before it is renewed
    local_queue: str = "default"  # Kueue LocalQueue for steps that name none
    shared_paths: str = ""  # comma-separated host directories mounted at the same path in every pod
    image_pull_policy: str = "IfNotPresent"  # for the containers of Kubernetes-backed steps

    def kueue_site(self) -> KueueSite:
        paths = tuple(p for p in self.shared_paths.split(",") if p)
        return KueueSite(
            default_local_queue=self.local_queue, shared_paths=paths, image_pull_policy=self.image_pull_policy
        )


TransportFactory = Callable[[str, SlurmClusterSpec, Callable[[str, str, str], str]], SlurmTransport]


class Controller:
    def __init__(
        self,
        kube: KubeAccess,
        settings: ControllerSettings | None = None,
        *,
        transport_factory: TransportFactory = build_transport,
        clock: WallClock = utc_now,
        monotonic_clock: Monotonic = monotonic,
    ) -> None:
        self.kube = kube
        self.settings = settings or ControllerSettings()
        self._transport_factory = transport_factory
        self._clock = clock
        self._monotonic = monotonic_clock
        self.steps: dict[str, dict[str, Any]] = {}  # uid -> latest object seen
        self.clusters: dict[str, SlurmClusterSpec] = {}
        self._transports: dict[str, tuple[SlurmTransport, SlurmClusterSpec]] = {}
        self._snapshots: dict[str, dict[str, SlurmJob]] = {}  # cluster -> step uid -> job
        self._snapshot_seq: dict[str, int] = {}  # cluster -> count of successful listings
        self._submitted: dict[str, int] = {}  # uid -> job id, until the listing shows the job
        self._attempted: dict[str, int] = {}  # uid -> snapshot seq at the last submit attempt
        self._status_written: dict[str, datetime] = {}  # uid -> our last status write (or first sight)
        self._clusters_read_at: float | None = None  # monotonic; None: never read
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._threads: list[threading.Thread] = []
        self._appliers = ThreadPoolExecutor(max(1, self.settings.apply_workers), "converged-apply")
        self._kube_objects: dict[str, dict[str, dict[str, Any]]] = {}  # kind -> step uid -> object
        self._workloads: dict[str, dict[str, Any]] = {}  # owner uid -> Workload
        self._pods: dict[str, list[dict[str, Any]]] = {}  # step uid -> pods
        self._served: frozenset[str] | None = None  # operator kinds the API server serves
        self._parsed: dict[str, tuple[str, WorkflowStep]] = {}  # uid -> (resourceVersion, model)
        self._kueue_observed = False
        self.slurm_queries = 0  # Slurm listings made, for benchmarks and tests
        self.cycles = 0
        self.cycle_cpu_seconds: list[float] = []  # CPU of each poll cycle (listing + reconcile), last 1000

    # --- hosting ---
    def start(self) -> None:
        """Run in background threads (embedded mode); returns once the first LIST is in."""
        loop = threading.Thread(target=self.run, name="converged-controller", daemon=True)
        self._threads.append(loop)
        loop.start()
        self._synced.wait(timeout=60)

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._events.put(("STOP", None))
        for t in self._threads:
            if t.name != WATCH_THREAD:  # blocked in a WATCH until its next event or timeout; a daemon
                t.join(timeout)  # thread that returns at its next event: no exit waits for it
        self._appliers.shutdown(wait=False, cancel_futures=True)
        for transport, _ in self._transports.values():
            transport.close()

    def run(self) -> None:
        """The loop; returns when stop() is called."""
        watcher = threading.Thread(target=self._watch, name=WATCH_THREAD, daemon=True)
        self._threads.append(watcher)
        watcher.start()
        next_poll: float | None = None  # monotonic; None: poll as soon as the first LIST is in
        while not self._stop.is_set():
            now = self._monotonic()
            if self._synced.is_set() and (next_poll is None or now >= next_poll):
                self._guard(self._poll_and_reconcile)
                # at a fixed rate, so a job's end waits at most one interval to be listed; yet never so
                # soon after a long cycle that the watch's events would wait behind the next one
                interval = self.settings.poll_interval
                next_poll = max(now + interval, self._monotonic() + interval / 4)
            wait = self.settings.poll_interval if next_poll is None else next_poll - self._monotonic()
            try:
                kind, obj = self._events.get(timeout=max(0.0, wait))
            except queue.Empty:
                continue
            self._guard(partial(self._on_event, kind, obj))

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("controller cycle failed; continuing")

    # --- reading the API ---
    def _watch(self) -> None:
        """LIST, then WATCH from its resourceVersion; LIST again when the watch expires (410)."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                items, rv = self.kube.list_steps(self.settings.namespace, self.settings.label_selector)
                self._events.put(("SYNC", items))
                backoff = 0.5
                while not self._stop.is_set():
                    expired = False
                    for kind, obj in self.kube.watch_steps(
                        rv, self.settings.namespace, self.settings.watch_timeout, self.settings.label_selector
                    ):
                        if kind == "ERROR":
                            expired = True
                            break
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if kind != "BOOKMARK":
                            self._events.put((kind, obj))
                        if self._stop.is_set():
                            return
                    if expired:
                        break
            except BackendError as e:
                log.warning("watching WorkflowSteps failed, retrying in %.1fs: %s", backoff, e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _on_event(self, kind: str, obj: Any) -> None:
        if kind == "STOP":
            return
        if kind == "SYNC":
            self.steps = {o["metadata"]["uid"]: o for o in obj}
            self._synced.set()
            return
        uid = obj["metadata"]["uid"]
        if kind == "DELETED":
            self.steps.pop(uid, None)
            self._parsed.pop(uid, None)
            self._submitted.pop(uid, None)
            self._attempted.pop(uid, None)
            self._status_written.pop(uid, None)
            return
        if _older(obj, self.steps.get(uid)):
            return  # from before our own write's answer: deciding on it would write the past again
        self.steps[uid] = obj
        self._reconcile(uid)

    def _refresh_clusters(self, force: bool = False) -> None:
        now = self._monotonic()
        if not force and not due(self._clusters_read_at, now, self.settings.cluster_refresh):
            return
        self._clusters_read_at = now
        clusters = {}
        for obj in self.kube.list_slurm_clusters():
            try:
                clusters[obj["metadata"]["name"]] = SlurmClusterSpec.model_validate(obj.get("spec", {}))
            except ValidationError as e:
                log.warning("SlurmCluster %s is invalid: %s", obj["metadata"]["name"], e)
        self.clusters = clusters

    def _transport(self, name: str) -> SlurmTransport | None:
        spec = self.clusters.get(name)
        if spec is None:
            return None
        held = self._transports.get(name)
        if held is not None and held[1] == spec:
            return held[0]
        if held is not None:
            held[0].close()
        transport = self._transport_factory(name, spec, self.kube.read_secret_key)
        self._transports[name] = (transport, spec)
        return transport

    # --- the cycle ---
    def _poll_and_reconcile(self) -> None:
        started = time.thread_time()
        try:
            self._poll_and_reconcile_once()
        finally:
            self.cycle_cpu_seconds = [*self.cycle_cpu_seconds[-999:], time.thread_time() - started]

    def _poll_and_reconcile_once(self) -> None:
        self.cycles += 1
        self._refresh_clusters()
        wanted = {name for step in self._slurm_steps() if (name := _cluster_of(step)) and _needs_slurm(step)}
        for name in sorted(wanted):
            transport = self._transport(name)
            if transport is None:
                continue
            try:
                jobs = transport.list_jobs()
            except BackendError as e:
                log.warning("listing Slurm jobs of %s failed: %s", name, e)
                self._snapshots.pop(name, None)  # never decide on a stale listing
                continue
            self.slurm_queries += 1
            self._snapshots[name] = index_by_step(jobs)
            self._snapshot_seq[name] = self._snapshot_seq.get(name, 0) + 1
        if any(o.get("spec", {}).get("backend") == Backend.KUEUE.value for o in self.steps.values()):
            try:
                self._observe_kubernetes()
            except BackendError as e:
                log.warning("observing Kubernetes-backed steps failed: %s", e)
                self._kueue_observed = False
        plans: list[tuple[str, list[Intent]]] = []
        for uid, obj in list(self.steps.items()):
            if _settled(obj):
                continue  # finished and not being deleted: nothing can change it
            try:
                decided = self._decide(uid)
            except Exception:  # one broken step must not stall the others
                log.exception("deciding on step %s failed; continuing", uid)
                continue
            if decided is None or not decided[1]:
                continue
            if plan_ends_step(*decided):
                self._guard(partial(self.apply_intents, uid, decided[1]))  # what everyone waits for: now
            else:
                plans.append((uid, decided[1]))
        # each step's own plan in order on one thread; steps apart. The loop waits, so only the appliers
        # touch the controller's state meanwhile, each under its own step's UID.
        applied = [partial(self.apply_intents, uid, intents) for uid, intents in plans]
        if self.settings.apply_workers > 1 and len(applied) > 1:
            list(self._appliers.map(self._guard, applied))
        else:
            for apply in applied:
                self._guard(apply)

    def _observe_kubernetes(self) -> None:
        """One LIST per served operator kind, one of Workloads and one of step pods: a constant per cycle."""
        if self._served is None or self.cycles % 30 == 1:
            self._served = frozenset(k for k, (g, v, p, _) in KINDS.items() if self.kube.served(g, v, p))
        selector = f"{MANAGED_LABEL}=converged"
        objects: dict[str, dict[str, dict[str, Any]]] = {}
        for kind in self._served:
            group, version, plural, _ = KINDS[kind]
            objects[kind] = {
                o["metadata"]["labels"][STEP_UID_LABEL]: o
                for o in self.kube.list_objects(group, version, plural, selector)
                if o["metadata"].get("labels", {}).get(STEP_UID_LABEL)
            }
        workloads: dict[str, dict[str, Any]] = {}
        for wl in self.kube.list_objects("kueue.x-k8s.io", "v1beta1", "workloads"):
            for owner in wl["metadata"].get("ownerReferences", []):
                workloads[owner["uid"]] = wl
        pods: dict[str, list[dict[str, Any]]] = {}
        for pod in self.kube.list_pods(STEP_UID_LABEL):
            pods.setdefault(pod["metadata"]["labels"][STEP_UID_LABEL], []).append(pod)
        self._kube_objects, self._workloads, self._pods = objects, workloads, pods
        self._kueue_observed = True

    def _decide_kueue(self, uid: str, step: WorkflowStep) -> list[Intent] | None:
        deleting = step.metadata.deletion_timestamp is not None
        if not self._kueue_observed and not is_finished(step) and not deleting:
            return None  # nothing observed yet: decide after the next poll
        operator_kind = OPERATOR_KINDS[step.spec.operator.value]
        obj = self._kube_objects.get(operator_kind, {}).get(uid)
        # Kueue admits the Job the Flux operator makes for a MiniCluster, not the MiniCluster itself
        owner = self._kube_objects.get("Job", {}).get(uid) if operator_kind == "MiniCluster" else obj
        workload = (
            self._workloads.get(owner["metadata"]["uid"]) if owner and "uid" in owner["metadata"] else None
        )
        now = self._clock()
        view = KueueView(
            site=self.settings.kueue_site(),
            obj=obj,
            workload=workload,
            pods=self._pods.get(uid, []),
            now=now,
            served_kinds=self._served if self._served is not None else frozenset(KINDS),
            status_written_at=self._status_written.setdefault(uid, now),
            pending_reason_refresh=timedelta(seconds=self.settings.pending_reason_refresh),
        )
        return plan_kueue_step(step, view)

    def _slurm_steps(self) -> list[WorkflowStep]:
        out = []
        for uid, obj in list(self.steps.items()):
            if obj.get("spec", {}).get("backend") == Backend.SLURM.value and not _settled(obj):
                try:
                    out.append(self._model(uid, obj))
                except ValidationError:
                    continue
        return out

    def _model(self, uid: str, obj: dict[str, Any]) -> WorkflowStep:
        """The validated step, parsed once per resourceVersion."""
        rv = obj["metadata"].get("resourceVersion", "")
        cached = self._parsed.get(uid)
        if cached is not None and cached[0] == rv and rv:
            return cached[1]
        step = WorkflowStep.model_validate(obj)
        self._parsed[uid] = (rv, step)
        return step

    def _reconcile(self, uid: str) -> None:
        decided = self._decide(uid)
        if decided is not None:
            self.apply_intents(uid, decided[1])

    def _decide(self, uid: str) -> tuple[WorkflowStep, list[Intent]] | None:
        """The step and its plan, from what this process knows now; None: nothing to decide yet."""
        obj = self.steps.get(uid)
        if obj is None:
            return None
        try:
            step = self._model(uid, obj)
        except ValidationError as e:
            self._refuse_invalid(obj, e)
            return None
        if step.spec.backend == Backend.KUEUE:
            intents = self._decide_kueue(uid, step)
            return None if intents is None else (step, intents)
        name = _cluster_of(step) or ""
        if name not in self.clusters and step.metadata.deletion_timestamp is None and not is_finished(step):
            # a step naming a cluster we have not read: re-read now, but at most once a second
            self._refresh_clusters(force=due(self._clusters_read_at, self._monotonic(), 1.0))
        spec = self.clusters.get(name)
        snapshot = self._snapshots.get(name)
        deleting = step.metadata.deletion_timestamp is not None
        if spec is not None and snapshot is None and not is_finished(step) and not deleting:
            return None  # no fresh listing of this cluster yet: decide after the next poll
        job = (snapshot or {}).get(uid)
        if job is not None:
            self._submitted.pop(uid, None)
        log_dir = _log_dir(step, self.settings.log_dir)
        tail = (
            read_log_tail(job.stdout) if job and job.terminal and job.exit_code != 0 and job.stdout else None
        )
        now = self._clock()
        view = SlurmView(
            cluster_name=name,
            cluster=spec,
            job=job,
            submitted_job_id=self._submitted.get(uid),
            log_dir=log_dir,
            now=now,
            log_tail=tail,
            status_written_at=self._status_written.setdefault(uid, now),
            pending_reason_refresh=timedelta(seconds=self.settings.pending_reason_refresh),
        )
        intents = plan_slurm_step(step, view)
        if any(isinstance(i, SubmitSlurmJob) for i in intents) and not self._may_submit(uid, name):
            intents = [i for i in intents if not isinstance(i, SubmitSlurmJob)]
        return step, intents

    def _may_submit(self, uid: str, cluster: str) -> bool:
        """Exactly once: only against a listing taken after this step's last submit attempt."""
        if uid in self._submitted:
            return False
        seq = self._snapshot_seq.get(cluster)
        return seq is not None and seq > self._attempted.get(uid, -1)

    # --- the one place that changes the world ---
    def apply_intents(self, uid: str, intents: list[Intent]) -> None:
        for intent in intents:
            obj = self.steps.get(uid)
            if obj is None:
                return
            meta = obj["metadata"]
            ns, name = meta["namespace"], meta["name"]
            try:
                if isinstance(intent, AddFinalizer):
                    fins = [*meta.get("finalizers", []), FINALIZER]
                    self.steps[uid] = self.kube.patch_step_finalizers(
                        ns, name, fins, meta.get("resourceVersion")
                    )
                elif isinstance(intent, RemoveFinalizer):
                    fins = [f for f in meta.get("finalizers", []) if f != FINALIZER]
                    self.kube.patch_step_finalizers(ns, name, fins, meta.get("resourceVersion"))
                elif isinstance(intent, WriteStatus):
                    status = build_status_patch(obj.get("status") or {}, intent.status)
                    self.steps[uid] = self.kube.patch_step_status(ns, name, status)
                    self._status_written[uid] = self._clock()
                    if intent.status.phase in TERMINAL_PHASES:
                        _remove_secret_file(obj, self.settings.log_dir)
                elif isinstance(intent, Emit):
                    self._emit(obj, intent)
                elif isinstance(intent, SubmitSlurmJob):
                    self._submit(uid, obj, intent)
                    return  # _submit reconciles again with the job id
                elif isinstance(intent, CancelSlurmJob) and not self._cancel(intent):
                    return  # keep the finalizer until the cancel goes through
                elif isinstance(intent, CreateObject):
                    self._create(uid, intent)
                elif isinstance(intent, DeleteObject):
                    self.kube.delete_object(
                        intent.group, intent.version, intent.plural, intent.namespace, intent.name
                    )
            except NotFound:
                self.steps.pop(uid, None)
                return
            except Conflict:
                return  # the watch brings the newer object; decide again then
            except BackendError as e:
                log.warning("step %s/%s: %s failed: %s", ns, name, type(intent).__name__, e)
                return

    def _create(self, uid: str, intent: CreateObject) -> None:
        kind = intent.body["kind"]
        try:
            created = self.kube.create_object(
                intent.group, intent.version, intent.plural, intent.namespace, intent.body
            )
        except AlreadyExists:
            created = intent.body  # made by an earlier attempt (or process): the next listing shows it
        except PermanentBackendError as e:
            obj = self.steps.get(uid)
            if obj is None:
                return
            message = f"the API server refused the {kind}: {e}"
            step = WorkflowStep.model_validate(obj)
            failed = build_status(
                step, phase=Phase.FAILED, reason="CreateRejected", message=message, now=self._clock()
            )
            self.apply_intents(uid, [WriteStatus(failed), Emit("Warning", "CreateRejected", message)])
            return
        self._kube_objects.setdefault(kind, {})[uid] = created

    def _emit(self, obj: dict[str, Any], intent: Emit) -> None:
        try:
            self.kube.emit_event(obj, intent.type, intent.reason, intent.message)
        except BackendError as e:
            log.info("event %s for %s not recorded: %s", intent.reason, obj["metadata"]["name"], e)

    def _submit(self, uid: str, obj: dict[str, Any], intent: SubmitSlurmJob) -> None:
        transport = self._transport(intent.cluster)
        if transport is None:
            return
        sub = intent.submission
        self._attempted[uid] = self._snapshot_seq.get(intent.cluster, 0)
        step = WorkflowStep.model_validate(obj)
        try:
            prepare_dir(intent.log_dir, sub.user)
            if intent.secret_env_file:
                values = {
                    e.name: self.kube.read_secret_key(
                        step.metadata.namespace or "",
                        e.value_from.secret_key_ref.name,
                        e.value_from.secret_key_ref.key,
                    )
                    for e in step.spec.env
                    if e.value_from is not None
                }
                write_private_file(intent.secret_env_file, build_secret_env_file(values), sub.user)
            job_id = transport.submit(sub)
        except TransientBackendError as e:
            log.warning("submitting step %s failed, will retry after the next listing: %s", uid, e)
            return
        except PermanentBackendError as e:
            message = f"Slurm refused the job: {e}"
            failed = build_status(
                step, phase=Phase.FAILED, reason="SubmitFailed", message=message, now=self._clock()
            )
            self.apply_intents(uid, [WriteStatus(failed), Emit("Warning", "SubmitFailed", message)])
            return
        log.info(
            "step %s/%s submitted as Slurm job %s/%s",
            step.metadata.namespace,
            step.metadata.name,
            intent.cluster,
            job_id,
        )
        self._submitted[uid] = job_id
        self._reconcile(uid)

    def _cancel(self, intent: CancelSlurmJob) -> bool:
        transport = self._transport(intent.cluster)
        if transport is None:
            return True
        try:
            transport.cancel(intent.job_id, intent.user)
        except TransientBackendError as e:
            log.warning("cancelling Slurm job %s/%s failed, will retry: %s", intent.cluster, intent.job_id, e)
            return False
        except PermanentBackendError as e:
            log.warning("cancelling Slurm job %s/%s refused: %s", intent.cluster, intent.job_id, e)
        return True

    def _refuse_invalid(self, obj: dict[str, Any], error: ValidationError) -> None:
        status = obj.get("status") or {}
        if status.get("phase") == Phase.FAILED.value:
            return
        message = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in error.errors()
        )[:2000]
        meta = obj["metadata"]
        now = self._clock().isoformat()
        patch = {
            "phase": Phase.FAILED.value,
            "reason": "InvalidSpec",
            "message": message,
            "observedGeneration": meta.get("generation"),
            "conditions": [
                {
                    "type": "Finished",
                    "status": "True",
                    "reason": "InvalidSpec",
                    "message": message,
                    "lastTransitionTime": now,
                    "observedGeneration": meta.get("generation"),
                }
            ],
        }
        try:
            self.kube.patch_step_status(meta["namespace"], meta["name"], patch)
            self.kube.emit_event(obj, "Warning", "InvalidSpec", message)
        except BackendError as e:
            log.warning("could not report invalid step %s: %s", meta["name"], e)


def _settled(obj: dict[str, Any]) -> bool:
    """A step in a terminal phase that is not being deleted: no cycle needs to look at it again."""
    phase = (obj.get("status") or {}).get("phase")
    return phase in {p.value for p in TERMINAL_PHASES} and not obj["metadata"].get("deletionTimestamp")


def _older(obj: dict[str, Any], held: dict[str, Any] | None) -> bool:
    """`obj`, from the watch, is an older version of the step than `held`, the answer to our own write.

    The watch delivers a step's versions in order, but behind the loop's own writes. Only integer
    resourceVersions (etcd revisions, as kube-apiserver writes them) are compared; any other counts
    as new, as before.
    """
    if held is None:
        return False
    try:
        return int(obj["metadata"]["resourceVersion"]) < int(held["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return False


def _cluster_of(step: WorkflowStep) -> str | None:
    return step.spec.slurm.cluster if step.spec.slurm else None


def _needs_slurm(step: WorkflowStep) -> bool:
    return not is_finished(step) or step.metadata.deletion_timestamp is not None


def _log_dir(step: WorkflowStep, default: str) -> str:
    if step.spec.working_dir:
        return f"{step.spec.working_dir.rstrip('/')}/.converged/logs"
    return default


def _remove_secret_file(obj: dict[str, Any], default_log_dir: str) -> None:
    try:
        step = WorkflowStep.model_validate(obj)
    except ValidationError:
        return
    if not any(e.value_from is not None for e in step.spec.env):
        return
    path = Path(_log_dir(step, default_log_dir)) / ".secrets" / f"{step.metadata.uid}.env"
    path.unlink(missing_ok=True)
