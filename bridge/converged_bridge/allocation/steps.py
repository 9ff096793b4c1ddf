"""Decisions for a step that runs in a StepAllocation (pure: the allocation's facts in, intents out).

A grouped step (label `converged.dev/group=<allocation>`) is never submitted alone: it is handed over to
its allocation's agent, and its status follows what the agent recorded (claimed, started, done with an
exit code), in the allocation's backend job. Its WorkflowStep keeps its own phase, exit code, times and
log; deleting it cancels it alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from converged_bridge.allocation.handover import Handover
from converged_bridge.allocation.intents import CancelHandedStep, HandOverStep
from converged_bridge.allocation.paths import AllocationPaths
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import Backend, BackendRef, Operator, Phase, WorkflowStep
from converged_bridge.reconcile.intents import Emit, Intent
from converged_bridge.reconcile.status import TERMINAL_PHASES, StatusTiming, plan_status
from converged_bridge.wire import GROUP_LABEL

MISSING_GRACE = timedelta(seconds=60)  # a step may name an allocation the controller has not listed yet


@dataclass(frozen=True)
class AllocationJob:
    """An allocation's backend job or object as observed this cycle, in any backend's words."""

    phase: Phase
    reason: str | None
    message: str
    ref: BackendRef
    start: datetime | None = None
    end: datetime | None = None

    @property
    def ended(self) -> bool:
        return self.phase in TERMINAL_PHASES


@dataclass(frozen=True)
class AllocationFacts:
    """What a grouped step's decision knows of its allocation."""

    name: str
    paths: AllocationPaths
    job: AllocationJob | None  # None: not submitted yet (or not listed yet)
    ended: bool  # no agent will take a step any more (its job ended, or it was deleted before one ran)
    handover: Handover

    @property
    def ref(self) -> BackendRef | None:
        return self.job.ref.in_allocation(self.name) if self.job is not None else None

    def waiting(self) -> str:
        """Why a handed-over step waits, in the allocation's words."""
        if self.job is None:
            return f"handed over to StepAllocation {self.name}, whose job is not submitted yet"
        if self.job.phase == Phase.RUNNING:
            return (
                f"handed over to StepAllocation {self.name}: waiting for a free slot ({self.job.ref.display})"
            )
        why = f" ({self.job.reason})" if self.job.reason else ""
        return f"handed over to StepAllocation {self.name}: its job {self.job.ref.display} is queued{why}"


@dataclass(frozen=True)
class GroupedStepView:
    allocation: AllocationFacts | None  # None: no StepAllocation of that name (yet)
    script: str | None  # the step's script for the agent, built by its backend
    refusal: str | None  # why the step cannot run in the allocation (then no script)
    log_path: str
    timing: StatusTiming
    log_tail: str | None = None  # the end of the step's log, read by the shell once it failed
    missing_grace: timedelta = MISSING_GRACE
    warm: str | None = None  # its spec for the allocation's warm launcher, when it can run warm


def check_step_fits(step: WorkflowStep, alloc: StepAllocation) -> str | None:
    """Why `step` cannot run in one of `alloc`'s slots, if it cannot."""
    spec, slot = step.spec, alloc.spec.resources
    r = spec.resources
    name = alloc.metadata.name
    problems = []
    if spec.backend != alloc.spec.backend:
        problems.append(
            f"the step runs on {spec.backend.value}, StepAllocation {name} on {alloc.spec.backend.value}"
        )
    if spec.operator != Operator.JOB or r.nodes != 1 or r.tasks != 1:
        problems.append("only single-task job steps run in an allocation's slot (not MPI or operator steps)")
    if r.cpus > slot.cpus or r.gpus > slot.gpus:
        problems.append(
            f"the step needs {r.cpus} cpus and {r.gpus} gpus, a slot has {slot.cpus} and {slot.gpus}"
        )
    if r.mem_mib is not None and slot.mem_mib is not None and r.mem_mib > slot.mem_mib:
        problems.append(f"the step needs {r.mem_mib} MiB, a slot has {slot.mem_mib}")
    if r.gpu_model is not None and r.gpu_model != slot.gpu_model:
        problems.append(f"the step needs {r.gpu_model} GPUs, the allocation has {slot.gpu_model or 'any'}")
    if spec.backend == Backend.KUEUE and spec.image != alloc.spec.image:
        problems.append(f"the step's image is not the allocation's pod's ({alloc.spec.image})")
    if any(e.value_from is not None for e in spec.env):
        problems.append("secret environment variables (valueFrom) are not handed to an allocation's agent")
    return "; ".join(problems) or None


def plan_grouped_step(step: WorkflowStep, view: GroupedStepView) -> list[Intent]:
    """Intents that move a grouped `step` toward what its allocation's agent recorded."""
    uid = step.metadata.uid or ""
    alloc = view.allocation
    if alloc is None:
        created = step.metadata.creation_timestamp or view.timing.now
        if view.timing.now - created > view.missing_grace:
            return _status(step, view, Phase.FAILED, "AllocationNotFound", _missing(step), warn=True)
        return _status(step, view, Phase.PENDING, "WaitingForAllocation", _missing(step))
    h = alloc.handover
    result = h.done.get(uid)
    if result is not None:
        if uid in h.cancelled or result.exit_code is None:
            message = f"cancelled in StepAllocation {alloc.name}"
            return _status(step, view, Phase.CANCELLED, "Cancelled", message, alloc, result.exit_code)
        start, end = result.started, result.ended
        if result.exit_code == 0:
            message = f"completed with exit code 0 in StepAllocation {alloc.name}"
            return _status(step, view, Phase.SUCCEEDED, None, message, alloc, 0, start=start, end=end)
        code = result.exit_code
        if result.stopped:
            message = f"stopped (exit code {code}) when StepAllocation {alloc.name} ended"
            return _status(
                step, view, Phase.FAILED, "AllocationEnded", message, alloc, code, start=start, end=end
            )
        message = f"failed with exit code {code} in StepAllocation {alloc.name}"
        return _status(
            step, view, Phase.FAILED, "NonZeroExitCode", message, alloc, code, start=start, end=end, tail=True
        )
    if uid not in h.handed:
        if alloc.ended:
            message = f"StepAllocation {alloc.name} ended before the step was handed over"
            return _status(step, view, Phase.FAILED, "AllocationEnded", message, alloc, warn=True)
        if view.script is None:
            return _status(step, view, Phase.FAILED, "InvalidSpec", view.refusal or "no script", warn=True)
        hand = HandOverStep(alloc.paths, uid, view.script, view.warm)
        return [hand, *_status(step, view, Phase.QUEUED, "HandedOver", alloc.waiting(), alloc)]
    if uid not in h.claimed:
        if alloc.ended:
            message = f"StepAllocation {alloc.name} ended before its agent took the step"
            return _status(step, view, Phase.FAILED, "AllocationEnded", message, alloc, warn=True)
        return _status(step, view, Phase.QUEUED, "WaitingForSlot", alloc.waiting(), alloc)
    started = h.started.get(uid)
    if alloc.ended:
        why = f" ({alloc.job.reason})" if alloc.job is not None and alloc.job.reason else ""
        message = f"StepAllocation {alloc.name} ended{why} before the step did"
        return _status(step, view, Phase.FAILED, "AllocationEnded", message, alloc, start=started, warn=True)
    where = alloc.job.ref.display if alloc.job is not None else alloc.name
    message = f"running in StepAllocation {alloc.name} ({where})"
    return _status(step, view, Phase.RUNNING, None, message, alloc, start=started or view.timing.now)


def plan_grouped_cleanup(step: WorkflowStep, view: GroupedStepView) -> list[Intent] | None:
    """A deleted grouped step: stop it in its allocation, or skip it there. None: wait for the agent."""
    uid = step.metadata.uid or ""
    alloc = view.allocation
    if alloc is None or alloc.ended or not alloc.handover.readable:
        return []  # nothing will run it (an unreadable spool: the allocation's own end stops it)
    h = alloc.handover
    if uid in h.done or uid not in h.handed:
        return []
    if uid not in h.cancelled:
        return [
            CancelHandedStep(alloc.paths, uid),
            Emit("Normal", "Cancelling", f"cancelling the step in StepAllocation {alloc.name}"),
        ]
    if uid not in h.claimed:
        return []  # marked before the agent claimed it: the agent skips it
    return None  # claimed, marked: the agent stops it and records its end


def _missing(step: WorkflowStep) -> str:
    name = step.metadata.labels.get(GROUP_LABEL, "")
    return f"StepAllocation {name!r} not found in namespace {step.metadata.namespace}"


def _status(
    step: WorkflowStep,
    view: GroupedStepView,
    phase: Phase,
    reason: str | None,
    message: str,
    alloc: AllocationFacts | None = None,
    exit_code: int | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    tail: bool = False,
    warn: bool = False,
) -> list[Intent]:
    return plan_status(
        step,
        phase=phase,
        reason=reason,
        message=message,
        backend_ref=alloc.ref if alloc is not None else None,
        exit_code=exit_code,
        start_time=start,
        completion_time=end,
        log_path=view.log_path if alloc is not None and alloc.job is not None else None,
        log_tail=view.log_tail if tail else None,
        warn=warn,
        timing=view.timing,
    )
