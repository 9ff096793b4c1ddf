"""Decisions for a StepAllocation (pure: its backend job, its steps and its spool in; intents out).

An allocation's job is submitted once, as soon as the allocation exists (the plugin creates it when the
group's first step is ready). Its phase follows that job: Pending (not submitted), Queued, Running, then
Succeeded when the agent ended by itself (closed and done, or idle), Failed or Cancelled. Once the
workflow says no step of the group will come (`spec.closed`, with the count of steps it gave), and
every one of those has been handed over, the spool is closed: the agent runs what it holds and exits,
and the allocation goes down. Deleting it cancels its job (its running steps end with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from converged_bridge.allocation.handover import Handover
from converged_bridge.allocation.intents import CloseAllocation
from converged_bridge.allocation.paths import AllocationPaths
from converged_bridge.allocation.steps import AllocationJob
from converged_bridge.api.conditions import set_condition
from converged_bridge.api.stepallocation import AllocationSteps, StepAllocation, StepAllocationStatus
from converged_bridge.api.workflowstep import BackendRef, Phase
from converged_bridge.reconcile.intents import BackendIntent, Emit, Intent, WriteAllocationStatus
from converged_bridge.reconcile.status import TERMINAL_PHASES, WAITING_PHASES, StatusTiming, condition


@dataclass(frozen=True)
class StepSummary:
    """One of the allocation's steps (label converged.dev/group) as the controller holds it."""

    uid: str
    phase: Phase | None
    deleting: bool = False

    @property
    def live(self) -> bool:
        return self.phase not in TERMINAL_PHASES and not self.deleting


@dataclass(frozen=True)
class AllocationView:
    """What the controller knows, this cycle, about one allocation."""

    paths: AllocationPaths
    job: AllocationJob | None  # its backend job or object, as listed this cycle
    submitted: BackendRef | None  # submitted by this process, not listed yet
    submit: BackendIntent | None  # what submits its job (built by its backend); None: not now
    refusal: tuple[str, str] | None  # (reason, message): its job cannot be submitted at all
    cancel: BackendIntent | None  # what ends its job, while one may run or wait
    steps: Sequence[StepSummary]
    handover: Handover
    target: str
    log_path: str | None
    timing: StatusTiming


def ready_to_close(alloc: StepAllocation, view: AllocationView) -> bool:
    """The workflow closed the allocation, every step it said it gave is known, and each live one is
    handed over (a step not listed here yet, or not handed over yet, keeps the spool open)."""
    h = view.handover
    if not alloc.spec.closed or h.closed or not h.readable:
        return False
    known = {s.uid for s in view.steps} | h.handed | h.cancelled
    return len(known) >= alloc.spec.expected_steps and all(s.uid in h.handed for s in view.steps if s.live)


def count_steps(view: AllocationView) -> AllocationSteps:
    steps = view.steps
    return AllocationSteps(
        total=len(steps),
        running=sum(1 for s in steps if s.phase == Phase.RUNNING),
        finished=sum(1 for s in steps if s.phase in TERMINAL_PHASES),
        failed=sum(1 for s in steps if s.phase == Phase.FAILED),
    )


def plan_allocation(alloc: StepAllocation, view: AllocationView) -> list[Intent]:
    """Intents that move a live allocation toward its job's truth. Order matters; apply in sequence."""
    close: list[Intent] = []
    if ready_to_close(alloc, view):
        close = [CloseAllocation(view.paths)]
        view = replace(view, handover=replace(view.handover, closed=True))  # the status says so at once
    job = view.job
    if job is not None:
        message = job.message
        if job.phase == Phase.SUCCEEDED:
            message = f"{job.ref.display} ended after its last step"
        return close + _status(
            alloc, view, job.phase, job.reason, message, job.ref, start=job.start, end=job.end
        )
    if view.submitted is not None:
        ref = view.submitted
        return close + _status(alloc, view, Phase.QUEUED, "Submitted", f"submitted as {ref.display}", ref)
    if alloc.status.backend_ref is not None:
        message = f"{alloc.status.backend_ref.display} is gone: it ended longer ago than the backend keeps it"
        return _status(alloc, view, Phase.FAILED, "JobNotFound", message, warn=True)
    if alloc.spec.closed and alloc.spec.expected_steps == 0 and not any(s.live for s in view.steps):
        return _status(alloc, view, Phase.SUCCEEDED, "Unused", "closed before any step needed it")
    if view.refusal is not None:
        reason, message = view.refusal
        return _status(alloc, view, Phase.FAILED, reason, message, warn=True)
    if view.submit is None:
        return []
    return [view.submit]


def plan_allocation_cleanup(alloc: StepAllocation, view: AllocationView) -> list[Intent]:
    """A deleted allocation: close its spool and end its job (its running steps end with it). One that
    never had a job has no agent to tell: it lets go at once (also when its spool could not be made)."""
    out: list[Intent] = []
    ref = view.job.ref if view.job is not None else view.submitted
    if ref is not None and view.handover.readable and not view.handover.closed:
        out.append(CloseAllocation(view.paths))
    alive = view.job is None or not view.job.ended
    if alive and ref is not None and view.cancel is not None:
        out += [view.cancel, Emit("Normal", "Cancelling", f"ending the allocation's job {ref.display}")]
    return out


def build_allocation_status(
    alloc: StepAllocation,
    view: AllocationView,
    *,
    phase: Phase,
    reason: str | None,
    message: str,
    ref: BackendRef | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> StepAllocationStatus:
    """The status `alloc` should have, keeping what its current status already knows."""
    now = view.timing.now
    gen = alloc.metadata.generation
    old = alloc.status
    ref = ref or old.backend_ref
    terminal = phase in TERMINAL_PHASES
    closed = view.handover.closed or (old.phase in TERMINAL_PHASES)
    conditions = list(old.conditions)
    for type_, ok, word, text in (
        (
            "Submitted",
            ref is not None,
            "BackendAccepted" if ref else "NotSubmitted",
            ref.display if ref else message,
        ),
        ("Running", phase == Phase.RUNNING, phase.value, message),
        (
            "Closed",
            closed,
            "Closed" if closed else "Open",
            "no step will come" if closed else "steps may come",
        ),
        ("Finished", terminal, phase.value if terminal else "InProgress", message),
    ):
        conditions = set_condition(conditions, condition(type_, ok, word, text, gen), now)
    return StepAllocationStatus(
        phase=phase,
        observed_generation=gen,
        conditions=conditions,
        backend_ref=ref,
        reason=reason,
        message=message,
        target=view.target,
        start_time=start or old.start_time,
        completion_time=(end or old.completion_time or now) if terminal else None,
        log_path=view.log_path or old.log_path,
        steps=count_steps(view),
    )


def _status(
    alloc: StepAllocation,
    view: AllocationView,
    phase: Phase,
    reason: str | None,
    message: str,
    ref: BackendRef | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    warn: bool = False,
) -> list[Intent]:
    """WriteAllocationStatus when it differs from the stored one (a waiting allocation's new reason alone
    at most once per `pending_reason_refresh`), and an Event on a phase change."""
    new = build_allocation_status(
        alloc, view, phase=phase, reason=reason, message=message, ref=ref, start=start, end=end
    )
    old = alloc.status
    if _dump(new) == _dump(old):
        return []
    timing = view.timing
    if (
        timing.written_at is not None
        and timing.now - timing.written_at < timing.pending_reason_refresh
        and phase in WAITING_PHASES
        and old.phase == phase
        and _dump(new, wording=False) == _dump(old, wording=False)
    ):
        return []
    out: list[Intent] = [WriteAllocationStatus(new)]
    if phase != old.phase or warn:
        out.append(Emit("Warning" if phase == Phase.FAILED else "Normal", reason or phase.value, message))
    return out


def _dump(status: StepAllocationStatus, wording: bool = True) -> dict[str, Any]:
    """The status as stored; without the wording (reasons, messages) to compare what else changed."""
    doc: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not wording:
        doc.pop("reason", None)
        doc.pop("message", None)
        doc["conditions"] = [
            {k: v for k, v in c.items() if k not in ("reason", "message")} for c in doc.get("conditions", [])
        ]
    return doc
