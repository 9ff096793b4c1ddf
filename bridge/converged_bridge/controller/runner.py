"""The WorkflowStep controller: generic over backends.

Reads: one LIST then one WATCH of WorkflowSteps (in a watcher thread), and per poll cycle each backend
unit's observation of its own steps (one Slurm listing per cluster; the Kueue unit's informers'
caches) — never a request per step. Decides every unfinished step through `reconcile.lifecycle` (finalizer,
deletion) and its backend's pure plan. Writes: finalizers, status (only when it changed; a waiting
step's new reason alone at most every `pending_reason_refresh`) and events, all in `apply_intents`,
which hands backend intents to their unit. A poll cycle applies the plans that end a step first,
then all others (submissions of new steps included: new work never waits for a later cycle), those
on `apply_workers` threads, one step's plan in order on one thread. The watch's events are taken in
batches (all that are queued), and the steps they change decided and applied together the same way,
so a burst of new steps is created on the appliers. Runs as a process
(`python -m converged_bridge.controller`) or embedded in another Python process (`start()` /
`stop()`), from the same code.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from pydantic import ValidationError

from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import Backend, WorkflowStep
from converged_bridge.backends.base import BackendUnit
from converged_bridge.controller.allocations import AllocationDriver
from converged_bridge.controller.echoes import AwaitedEchoes
from converged_bridge.controller.recording import EventSink, emit_intent_event, refuse_invalid
from converged_bridge.controller.settings import ControllerSettings
from converged_bridge.controller.units import TransportFactory, UnitContext, build_units
from converged_bridge.controller.wakeups import WAKE, Wakeups
from converged_bridge.controller.watch import watch_steps
from converged_bridge.errors import BackendError
from converged_bridge.kube.allocations import StepAllocations
from converged_bridge.kube.core import Conflict, KubeCore, NotFound
from converged_bridge.kube.events import EventRecorder
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.kube.steps import WorkflowSteps
from converged_bridge.reconcile.intents import (
    AddFinalizer,
    BackendIntent,
    Emit,
    Intent,
    RemoveFinalizer,
    WriteStatus,
)
from converged_bridge.reconcile.lifecycle import plan_lifecycle
from converged_bridge.reconcile.retention import plan_retention
from converged_bridge.reconcile.status import (
    TERMINAL_PHASES,
    StatusTiming,
    build_status_patch,
    is_settled,
    plan_ends_step,
)
from converged_bridge.routing import UnknownBackend
from converged_bridge.timing import Monotonic, WallClock, due, monotonic, utc_now
from converged_bridge.wire import CONTROLLER_FIELD_MANAGER, FINALIZER

log = logging.getLogger("converged.controller")

EVENT_BATCH = 1000  # watch events taken together before their steps are decided


class Controller:
    def __init__(
        self,
        steps: WorkflowSteps,
        events: EventSink,
        units: Mapping[Backend, BackendUnit],
        settings: ControllerSettings | None = None,
        *,
        clock: WallClock = utc_now,
        monotonic_clock: Monotonic = monotonic,
        allocations: StepAllocations | None = None,
        wakeups: Wakeups | None = None,
    ) -> None:
        self.api = steps
        self.events = events
        self.units = dict(units)
        self.settings = settings or ControllerSettings()
        self._clock = clock
        self._monotonic = monotonic_clock
        self.steps: dict[str, dict[str, Any]] = {}  # uid -> latest object seen
        self._parsed: dict[str, tuple[str, WorkflowStep]] = {}  # uid -> (resourceVersion, model)
        self._status_written: dict[str, datetime] = {}  # uid -> our last status write (or first sight)
        self._echoes = AwaitedEchoes()  # our writes whose versions the watch has not brought back yet
        self._unserved: set[str] = set()  # uids of steps whose backend has no unit here (told once)
        self._wakeups = wakeups or Wakeups(queue.Queue())
        self._polled_allocations: dict[Backend, list[StepAllocation]] = {}  # the last full cycle's
        self._events: queue.Queue[tuple[str, Any]] = self._wakeups.inbox  # the watch's events, and wakeups
        self._woken: set[Backend] = set()  # backends whose objects changed since their last cycle
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._threads: list[threading.Thread] = []
        self._appliers = ThreadPoolExecutor(max(1, self.settings.apply_workers), "converged-apply")
        self.allocations = AllocationDriver(
            allocations,
            events,
            self.units,
            namespace=self.settings.namespace,
            label_selector=self.settings.label_selector,
            pending_reason_refresh=self.settings.pending_reason_refresh,
            clock=clock,
        )
        self.cycles = 0
        self._retention_looked: float | None = None  # monotonic; None: not yet
        self.runs_expired = 0
        self.cycle_cpu_seconds: list[
            float
        ] = []  # CPU of each poll cycle (observe + decide + apply), last 1000

    @classmethod
    def connect(
        cls,
        core: KubeCore,
        settings: ControllerSettings | None = None,
        *,
        clock: WallClock = utc_now,
        monotonic_clock: Monotonic = monotonic,
        transport_factory: TransportFactory | None = None,
    ) -> Controller:
        """A controller on one Kubernetes client, with every backend unit."""
        settings = settings or ControllerSettings()
        objects = KubeObjects(core)
        wakeups = Wakeups(queue.Queue())
        context = UnitContext(objects, settings, clock, monotonic_clock, wake=wakeups.waker)
        units = build_units(
            replace(context, transport_factory=transport_factory) if transport_factory else context
        )
        events = EventRecorder(objects, CONTROLLER_FIELD_MANAGER, clock=clock)
        return cls(
            WorkflowSteps(objects),
            events,
            units,
            settings,
            clock=clock,
            monotonic_clock=monotonic_clock,
            allocations=StepAllocations(objects),
            wakeups=wakeups,
        )

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
        for t in self._threads:  # the watch thread is a daemon blocked in its WATCH: no exit waits for it
            t.join(timeout)
        self._appliers.shutdown(wait=False, cancel_futures=True)
        for unit in self.units.values():
            unit.close()

    def run(self) -> None:
        """The loop; returns when stop() is called."""
        threading.Thread(
            target=watch_steps, args=(self.api, self.settings, self._events, self._stop), daemon=True
        ).start()
        interval = self.settings.poll_interval
        next_poll: float | None = None  # monotonic; None: poll as soon as the first LIST is in
        early = 0.0  # monotonic: the soonest a woken backend's cycle may run
        while not self._stop.is_set():
            now = self._monotonic()
            if self._synced.is_set() and (next_poll is None or now >= next_poll):
                self._woken.clear()
                self._guard(self.poll_and_reconcile)
                # at a fixed rate, so a job's end waits at most one interval to be listed; yet never so
                # soon after a long cycle that the watch's events would wait behind the next one
                next_poll = max(now + interval, self._monotonic() + interval / 4)
                early = self._monotonic() + interval / 4
            elif self._synced.is_set() and self._woken and now >= early:
                woken, self._woken = frozenset(self._woken), set()
                self._guard(partial(self.poll_and_reconcile, woken))  # their steps only, now
                early = self._monotonic() + interval / 4
            wait = interval if next_poll is None else next_poll - self._monotonic()
            if self._woken:
                wait = min(wait, early - self._monotonic())
            try:
                first = self._events.get(timeout=max(0.0, wait))
            except queue.Empty:
                continue
            self._guard(partial(self.on_events, [first, *self._waiting_events()]))

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("controller cycle failed; continuing")

    def unit(self, backend: Backend) -> BackendUnit:
        """The unit of `backend`; `UnknownBackend`, naming the registered ones, when there is none."""
        try:
            return self.units[backend]
        except KeyError:
            raise UnknownBackend(backend, self.units) from None

    def queries(self, backend: Backend) -> int:
        """The listings `backend`'s unit made so far (for benchmarks and tests)."""
        return self.unit(backend).queries

    # --- what the watch brings ---
    def _waiting_events(self) -> list[tuple[str, Any]]:
        """The events already queued behind the one taken (a burst of new steps), up to a bound."""
        out: list[tuple[str, Any]] = []
        while len(out) < EVENT_BATCH:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                break
        return out

    def on_event(self, kind: str, obj: Any) -> None:
        self.on_events([(kind, obj)])

    def on_events(self, events: list[tuple[str, Any]]) -> None:
        """Take a batch of the watch's events, then decide each step they changed once and apply the
        plans together, as a poll cycle does (a burst of new steps is created on the appliers, not one
        after the other on the loop)."""
        changed: dict[str, None] = {}  # step UIDs, in order
        for kind, obj in events:
            uid = self._take_event(kind, obj)
            if uid is not None:
                changed[uid] = None
        plans: list[tuple[str, list[Intent]]] = []
        for uid in changed:
            try:
                decided = self._decide(uid)
            except Exception:  # one broken step must not stall the others
                log.exception("deciding on step %s failed; continuing", uid)
                continue
            if decided is not None and decided[1]:
                plans.append((uid, decided[1]))
        self._apply_plans(plans)

    def _take_event(self, kind: str, obj: Any) -> str | None:
        """Keep what one event says; the UID of a step to decide on now, if any."""
        if kind == "STOP":
            return None
        if kind == WAKE:
            self._wakeups.taken(obj)
            self._woken.add(obj)
            return None
        if kind == "SYNC":
            self.steps = {o["metadata"]["uid"]: o for o in obj}
            self._echoes.clear()
            self._synced.set()
            return None
        uid: str = obj["metadata"]["uid"]
        if kind == "DELETED":
            self.steps.pop(uid, None)
            self._parsed.pop(uid, None)
            self._status_written.pop(uid, None)
            self._echoes.forget(uid)
            self._unserved.discard(uid)
            for unit in self.units.values():
                unit.forget(uid)
            return None
        if self._echoes.is_stale(uid, obj):
            return None  # from before our own write's answer: deciding on it would write the past again
        self.steps[uid] = obj
        return uid

    # --- the cycle ---
    def poll_and_reconcile(self, only: frozenset[Backend] | None = None) -> None:
        """One cycle: observe, decide, apply; `only` these backends' steps (a woken cycle: no
        StepAllocations, no retention) or all."""
        started = time.thread_time()
        try:
            self._poll_and_reconcile_once(only)
        finally:
            self.cycle_cpu_seconds = [*self.cycle_cpu_seconds[-999:], time.thread_time() - started]

    def _poll_and_reconcile_once(self, only: frozenset[Backend] | None = None) -> None:
        self.cycles += 1
        active: dict[Backend, list[WorkflowStep]] = {}
        for uid, obj in list(self.steps.items()):
            if is_settled(obj):
                continue  # finished and not being deleted: nothing can change it
            try:
                step = self._model(uid, obj)
            except ValidationError:
                continue
            if only is None or step.spec.backend in only:
                active.setdefault(step.spec.backend, []).append(step)
        if only is None:
            allocations = self.allocations.poll(self.steps)
            self._polled_allocations = allocations
        else:  # a woken cycle lists no allocations: its units keep seeing the last ones listed (an
            # allocation missing from an observation reads as gone, and its waiting steps as ended)
            allocations = {b: a for b, a in self._polled_allocations.items() if b in only}
        for backend in sorted(active.keys() | allocations.keys()):
            unit = self.units.get(backend)
            if unit is not None:  # steps of a backend without a unit: _decide says so
                unit.observe(active.get(backend, []), allocations.get(backend, []))
        plans: list[tuple[str, list[Intent]]] = []
        for uid, obj in list(self.steps.items()):
            if is_settled(obj):
                continue
            if only is not None and (
                uid not in self._parsed or self._parsed[uid][1].spec.backend not in only
            ):
                continue
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
        self._apply_plans(plans)
        if only is not None:
            return
        self._guard(partial(self.allocations.reconcile, self.steps, self._guard))
        now = self._monotonic()
        if due(self._retention_looked, now, self.settings.retention_interval):
            self._retention_looked = now
            self._guard(self.expire_finished_runs)

    def _backend_in(self, uid: str, backends: frozenset[Backend]) -> bool:
        parsed = self._parsed.get(uid)
        return parsed is not None and parsed[1].spec.backend in backends

    def _apply_plans(self, plans: list[tuple[str, list[Intent]]]) -> None:
        """Each step's own plan in order on one thread; steps apart. The loop waits, so only the appliers
        touch the controller's state meanwhile, each under its own step's UID."""
        applied = [partial(self.apply_intents, uid, intents) for uid, intents in plans]
        if self.settings.apply_workers > 1 and len(applied) > 1:
            list(self._appliers.map(self._guard, applied))
        else:
            for apply in applied:
                self._guard(apply)

    def expire_finished_runs(self) -> None:
        """Delete the steps of finished runs past their retention (reconcile.retention), a run at a time
        in one request, with the run's StepAllocations in another; their deletion then goes through the
        finalizer like any other."""
        for run in plan_retention(self.steps.values(), self._clock(), self.settings.default_run_ttl()):
            allocations = 0
            try:
                if run.run is None:
                    for name in run.steps:
                        self.api.delete_step(run.namespace, name)
                else:
                    # its allocations first: should the steps' call fail, the next look finds the run
                    allocations = self.allocations.delete_run(run.namespace, run.run)
                    self.api.delete_run_steps(run.namespace, run.run)
            except BackendError as e:
                log.warning("could not delete finished run %s/%s: %s", run.namespace, run.run, e)
                continue
            self.runs_expired += 1
            log.info(
                "run %s/%s finished at %s and is past its retention: deleted its %d steps%s",
                run.namespace,
                run.run,
                run.finished_at.isoformat(),
                len(run.steps),
                f" and {allocations} StepAllocations" if allocations else "",
            )

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
        try:
            unit = self.unit(step.spec.backend)
        except UnknownBackend as e:
            if uid not in self._unserved:
                self._unserved.add(uid)
                log.warning("step %s/%s is left alone: %s", step.metadata.namespace, step.metadata.name, e)
            return None
        now = self._clock()
        timing = StatusTiming(
            now=now,
            written_at=self._status_written.setdefault(uid, now),
            pending_reason_refresh=timedelta(seconds=self.settings.pending_reason_refresh),
        )
        intents = plan_lifecycle(
            step, running=partial(unit.decide, step, timing), cleanup=partial(unit.decide_cleanup, step)
        )
        return None if intents is None else (step, intents)

    # --- the one place that changes the world ---
    def apply_intents(self, uid: str, intents: list[Intent] | tuple[Intent, ...]) -> None:
        for intent in intents:
            obj = self.steps.get(uid)
            if obj is None:
                return
            meta = obj["metadata"]
            ns, name = meta["namespace"], meta["name"]
            try:
                if isinstance(intent, AddFinalizer):
                    fins = [*meta.get("finalizers", []), FINALIZER]
                    answer = self.api.patch_step_finalizers(ns, name, fins, meta.get("resourceVersion"))
                    self._echoes.wrote(uid, meta.get("resourceVersion"), answer)
                    self.steps[uid] = answer
                elif isinstance(intent, RemoveFinalizer):
                    fins = [f for f in meta.get("finalizers", []) if f != FINALIZER]
                    self.api.patch_step_finalizers(ns, name, fins, meta.get("resourceVersion"))
                elif isinstance(intent, WriteStatus):
                    status = build_status_patch(obj.get("status") or {}, intent.status)
                    answer = self.api.patch_step_status(ns, name, status)
                    self._echoes.wrote(uid, meta.get("resourceVersion"), answer)
                    self.steps[uid] = answer
                    self._status_written[uid] = self._clock()
                    if intent.status.phase in TERMINAL_PHASES:
                        self._finished(uid, obj)
                elif isinstance(intent, Emit):
                    self._emit(obj, intent)
                elif isinstance(intent, BackendIntent):
                    step = self._model(uid, obj)
                    done = self.unit(step.spec.backend).execute(step, intent)
                    if done.then:
                        self.apply_intents(uid, done.then)
                        return
                    if done.decide_again:
                        self._reconcile(uid)
                        return
                    if done.stop:
                        return
            except NotFound:
                self.steps.pop(uid, None)
                return
            except Conflict:
                return  # the watch brings the newer object; decide again then
            except BackendError as e:
                log.warning("step %s/%s: %s failed: %s", ns, name, type(intent).__name__, e)
                return

    def _finished(self, uid: str, obj: dict[str, Any]) -> None:
        try:
            step = self._model(uid, obj)
        except ValidationError:
            return
        self.unit(step.spec.backend).finished(step)

    def _emit(self, obj: dict[str, Any], intent: Emit) -> None:
        emit_intent_event(self.events, obj, intent)

    def _refuse_invalid(self, obj: dict[str, Any], error: ValidationError) -> None:
        refuse_invalid(obj, error, self.api.patch_step_status, self.events, self._clock)
