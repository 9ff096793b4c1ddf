"""The controller's StepAllocations: one LIST per poll cycle (with the controller's namespace and label
selector, as for steps), each live allocation decided through its backend unit and the shared lifecycle
(finalizer, deletion), its intents applied here — finalizers, status (only on change), events — or by its
unit (submit, cancel, close the spool).

An allocation's steps, for its decisions, are the WorkflowSteps the controller holds with the label
`converged.dev/group=<name>` in its namespace. Allocations that finished are passed to their unit only
while a step still names them (their steps' decisions need to know they ended).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from pydantic import ValidationError

from converged_bridge.allocation.plan import StepSummary
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import Backend, Phase
from converged_bridge.backends.base import BackendUnit
from converged_bridge.controller.recording import EventSink, emit_intent_event, refuse_invalid
from converged_bridge.errors import BackendError
from converged_bridge.kube.allocations import StepAllocations
from converged_bridge.kube.core import Conflict, NotFound
from converged_bridge.reconcile.intents import (
    AddFinalizer,
    BackendIntent,
    Emit,
    Intent,
    RemoveFinalizer,
    WriteAllocationStatus,
)
from converged_bridge.reconcile.lifecycle import plan_lifecycle
from converged_bridge.reconcile.status import StatusTiming, is_settled
from converged_bridge.routing import UnknownBackend
from converged_bridge.timing import WallClock
from converged_bridge.wire import FINALIZER, GROUP_LABEL

log = logging.getLogger("converged.controller.allocations")


class AllocationDriver:
    def __init__(
        self,
        api: StepAllocations | None,
        events: EventSink,
        units: Mapping[Backend, BackendUnit],
        *,
        namespace: str | None,
        label_selector: str,
        pending_reason_refresh: float,
        clock: WallClock,
    ) -> None:
        self.api = api  # None: this controller drives no allocations
        self.events = events
        self.units = units
        self._namespace = namespace
        self._selector = label_selector
        self._refresh = timedelta(seconds=pending_reason_refresh)
        self._clock = clock
        self.objects: dict[str, dict[str, Any]] = {}  # uid -> as last listed or written
        self._parsed: dict[str, tuple[str, StepAllocation]] = {}
        self._written: dict[str, datetime] = {}  # uid -> our last status write (or first sight)
        self._served = True
        self._unserved: set[str] = set()  # uids of allocations whose backend has no unit here (told once)

    # --- observe ---
    def poll(self, steps: Mapping[str, dict[str, Any]]) -> dict[Backend, list[StepAllocation]]:
        """LIST the allocations; those each backend unit must observe this cycle (live ones, and finished
        ones a live step still names)."""
        if self.api is None or not self._served:
            return {}
        try:
            listed = self.api.list_allocations(self._namespace, self._selector)
        except NotFound:
            log.info("StepAllocations are not served here (no CRD): steps run alone")
            self._served = False
            return {}
        except BackendError as e:
            log.warning("listing StepAllocations failed: %s", e)
            return {}
        self.objects = {o["metadata"]["uid"]: o for o in listed}
        self._parsed = {uid: held for uid, held in self._parsed.items() if uid in self.objects}
        named = {
            (o["metadata"]["namespace"], o["metadata"]["labels"][GROUP_LABEL])
            for o in steps.values()
            if (o["metadata"].get("labels") or {}).get(GROUP_LABEL) and not is_settled(o)
        }
        out: dict[Backend, list[StepAllocation]] = {}
        for uid, obj in self.objects.items():
            meta = obj["metadata"]
            if is_settled(obj) and (meta["namespace"], meta["name"]) not in named:
                continue
            try:
                alloc = self._model(uid, obj)
            except ValidationError as e:
                self._refuse_invalid(obj, e)
                continue
            out.setdefault(alloc.spec.backend, []).append(alloc)
        return out

    def delete_run(self, namespace: str, run_id: str) -> int:
        """Delete a finished run's allocations with its steps (retention); how many went."""
        if self.api is None or not self._served:
            return 0
        return self.api.delete_run_allocations(namespace, run_id)

    def _model(self, uid: str, obj: dict[str, Any]) -> StepAllocation:
        rv = obj["metadata"].get("resourceVersion", "")
        held = self._parsed.get(uid)
        if held is not None and held[0] == rv and rv:
            return held[1]
        alloc = StepAllocation.model_validate(obj)
        self._parsed[uid] = (rv, alloc)
        return alloc

    # --- decide and apply ---
    def reconcile(
        self, steps: Mapping[str, dict[str, Any]], guard: Callable[[Callable[[], None]], None]
    ) -> None:
        """Decide every live allocation on this cycle's observation and apply its plan."""
        by_group: dict[tuple[str, str], list[StepSummary]] = {}
        for uid, obj in steps.items():
            meta = obj["metadata"]
            group = (meta.get("labels") or {}).get(GROUP_LABEL)
            if group:
                phase = (obj.get("status") or {}).get("phase")
                summary = StepSummary(
                    uid, Phase(phase) if phase else None, bool(meta.get("deletionTimestamp"))
                )
                by_group.setdefault((meta["namespace"], group), []).append(summary)
        for uid, obj in list(self.objects.items()):
            if is_settled(obj) or uid not in self._parsed:
                continue
            alloc = self._parsed[uid][1]
            unit = self.units.get(alloc.spec.backend)
            if unit is None:
                if uid not in self._unserved:
                    self._unserved.add(uid)
                    known = UnknownBackend(alloc.spec.backend, self.units)
                    log.warning("allocation %s/%s is left alone: %s", *_name(alloc), known)
                continue
            now = self._clock()
            timing = StatusTiming(now, self._written.setdefault(uid, now), self._refresh)
            summaries = by_group.get((alloc.metadata.namespace or "", alloc.metadata.name or ""), [])
            intents = plan_lifecycle(
                alloc,
                running=partial(unit.decide_allocation, alloc, summaries, timing),
                cleanup=partial(unit.decide_allocation_cleanup, alloc, summaries, timing),
            )
            if intents:
                guard(partial(self.apply, uid, intents))

    def apply(self, uid: str, intents: list[Intent] | tuple[Intent, ...]) -> None:
        """The one place that changes an allocation (and, through its unit, its job and spool)."""
        assert self.api is not None
        for intent in intents:
            obj = self.objects.get(uid)
            if obj is None:
                return
            meta = obj["metadata"]
            ns, name = meta["namespace"], meta["name"]
            try:
                if isinstance(intent, AddFinalizer | RemoveFinalizer):
                    fins = [f for f in meta.get("finalizers", []) if f != FINALIZER]
                    if isinstance(intent, AddFinalizer):
                        fins.append(FINALIZER)
                    self.objects[uid] = self.api.patch_allocation_finalizers(
                        ns, name, fins, meta.get("resourceVersion")
                    )
                elif isinstance(intent, WriteAllocationStatus):
                    new = intent.status.model_dump(mode="json", by_alias=True, exclude_none=True)
                    patch = {**{k: None for k in obj.get("status") or {}}, **new}
                    self.objects[uid] = self.api.patch_allocation_status(ns, name, patch)
                    self._written[uid] = self._clock()
                elif isinstance(intent, Emit):
                    self._emit(obj, intent)
                elif isinstance(intent, BackendIntent):
                    alloc = self._parsed[uid][1]
                    done = self.units[alloc.spec.backend].execute_allocation(alloc, intent)
                    if done.then:
                        self.apply(uid, done.then)
                        return
                    if done.stop or done.decide_again:
                        return  # decided again on the next cycle's observation
            except NotFound:
                self.objects.pop(uid, None)
                return
            except Conflict:
                return
            except BackendError as e:
                log.warning("allocation %s/%s: %s failed: %s", ns, name, type(intent).__name__, e)
                return

    def _emit(self, obj: dict[str, Any], intent: Emit) -> None:
        emit_intent_event(self.events, obj, intent)

    def _refuse_invalid(self, obj: dict[str, Any], error: ValidationError) -> None:
        if self.api is not None:
            refuse_invalid(obj, error, self.api.patch_allocation_status, self.events, self._clock)


def _name(alloc: StepAllocation) -> tuple[str, str]:
    return alloc.metadata.namespace or "", alloc.metadata.name or ""
