"""What a backend unit composes to drive its StepAllocations and their steps: the allocations listed this
cycle, their hand-over directories read once per cycle, the views the pure plans decide on, and the
hand-over intents carried out. The backend supplies its own part through `AllocationBackend`: its
observation of the allocations' jobs, and the builders of a job, its cancellation and a step's script.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from converged_bridge.allocation.handover import (
    UNREADABLE,
    Handover,
    HandoverReader,
    hand_over,
    mark_cancelled,
    mark_closed,
)
from converged_bridge.allocation.intents import CancelHandedStep, CloseAllocation, HandOverStep
from converged_bridge.allocation.paths import AllocationPaths, build_allocation_paths
from converged_bridge.allocation.plan import (
    AllocationView,
    StepSummary,
    plan_allocation,
    plan_allocation_cleanup,
)
from converged_bridge.allocation.steps import (
    AllocationFacts,
    AllocationJob,
    GroupedStepView,
    check_step_fits,
    plan_grouped_cleanup,
    plan_grouped_step,
)
from converged_bridge.allocation.warm import build_warm_spec
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import BackendRef, WorkflowStep
from converged_bridge.errors import InvalidStep
from converged_bridge.logfiles import read_log_tail
from converged_bridge.reconcile.intents import DONE, BackendIntent, Executed, Intent
from converged_bridge.reconcile.status import TERMINAL_PHASES, StatusTiming
from converged_bridge.wire import GROUP_LABEL

GONE_KEPT = 1000  # deleted allocations remembered, for steps that still name them


class AllocationBackend(Protocol):
    """A backend's part in driving its allocations."""

    def observed(self, alloc: StepAllocation) -> bool:
        """Whether this cycle's observation covers the allocation's job (else: decide later)."""
        ...

    def job_of(self, alloc: StepAllocation) -> AllocationJob | None:
        """The allocation's job as observed this cycle; None when none is listed."""
        ...

    def submitted_of(self, alloc: StepAllocation) -> BackendRef | None:
        """A job submitted for it by this process and not listed yet."""
        ...

    def build_submit(
        self, alloc: StepAllocation, paths: AllocationPaths
    ) -> BackendIntent | tuple[str, str] | None:
        """What submits the allocation's job; (reason, message) when it cannot be; None: not now."""
        ...

    def build_cancel(self, alloc: StepAllocation) -> BackendIntent | None:
        """What ends the allocation's job, if one may run or wait."""
        ...

    def build_step_script(self, step: WorkflowStep, alloc: StepAllocation) -> str:
        """The script the agent runs for `step` (raises InvalidStep)."""
        ...

    def runs_warm(self, step: WorkflowStep, alloc: StepAllocation) -> bool:
        """Whether `step` may run as a fork of the allocation's warm snakemake on this backend."""
        ...

    def target_of(self, alloc: StepAllocation) -> str:
        """Where it runs, as the plan names targets."""
        ...

    def agent_log(self, alloc: StepAllocation) -> str | None:
        """Where the agent's own output goes, when the controller knows."""
        ...


def allocation_name(step: WorkflowStep) -> str | None:
    """The StepAllocation a step runs in (its label), or None for a step run alone."""
    return step.metadata.labels.get(GROUP_LABEL) or None


class AllocationKeeper:
    def __init__(self, backend: AllocationBackend, *, spool_root: str | None = None) -> None:
        self._backend = backend
        self._spool_root = spool_root or None
        self._reader = HandoverReader()
        self._lock = threading.Lock()  # appliers update the hand-over snapshots from several threads
        self._observed = False
        self._allocations: dict[tuple[str, str], StepAllocation] = {}  # (namespace, name) -> allocation
        self._paths: dict[str, AllocationPaths | InvalidStep] = {}  # allocation uid -> its directories
        self._handover: dict[str, Handover] = {}  # allocation uid -> this cycle's snapshot
        # allocations that were listed and are gone (deleted): their steps learn that they ended
        self._gone: dict[tuple[str, str], AllocationFacts] = {}

    # --- observe ---
    def observe(self, allocations: Sequence[StepAllocation]) -> None:
        """After the backend's own observation (so that a job seen ended has no agent left to write):
        each allocation's hand-over directories, read once."""
        current: dict[tuple[str, str], StepAllocation] = {}
        paths: dict[str, AllocationPaths | InvalidStep] = {}
        snapshots: dict[str, Handover] = {}
        for alloc in allocations:
            uid = alloc.metadata.uid or ""
            current[(alloc.metadata.namespace or "", alloc.metadata.name or "")] = alloc
            try:
                found = build_allocation_paths(alloc, self._spool_root)
            except InvalidStep as e:
                paths[uid], snapshots[uid] = e, UNREADABLE
                continue
            paths[uid], snapshots[uid] = found, self._reader.read(found)
        for key, alloc in self._allocations.items():
            uid = alloc.metadata.uid or ""
            old = self._paths.get(uid)
            if key not in current and isinstance(old, AllocationPaths):
                handover = self._reader.read(old)
                self._gone[key] = AllocationFacts(key[1], old, None, True, handover)
                self._reader.forget(old)
        for key in current.keys() & self._gone.keys():  # a new allocation of the same name
            del self._gone[key]
        for key in list(self._gone)[: max(0, len(self._gone) - GONE_KEPT)]:
            del self._gone[key]
        with self._lock:
            self._allocations, self._paths, self._handover = current, paths, snapshots
            self._observed = True

    def allocation_of(self, step: WorkflowStep) -> StepAllocation | None:
        name = allocation_name(step)
        return self._allocations.get((step.metadata.namespace or "", name)) if name else None

    def _facts(self, alloc: StepAllocation) -> AllocationFacts | None:
        uid = alloc.metadata.uid or ""
        paths = self._paths.get(uid)
        if not isinstance(paths, AllocationPaths):
            return None
        job = self._backend.job_of(alloc)
        submitted = self._backend.submitted_of(alloc)
        stopped = alloc.status.phase in TERMINAL_PHASES or alloc.metadata.deletion_timestamp is not None
        ended = (job is not None and job.ended) or (job is None and submitted is None and stopped)
        return AllocationFacts(
            alloc.metadata.name or "", paths, job, ended, self._handover.get(uid, UNREADABLE)
        )

    # --- a grouped step ---
    def decide_step(self, step: WorkflowStep, timing: StatusTiming) -> list[Intent] | None:
        view = self._step_view(step, timing)
        return None if view is None else plan_grouped_step(step, view)

    def decide_step_cleanup(self, step: WorkflowStep, timing: StatusTiming) -> list[Intent] | None:
        view = self._step_view(step, timing)
        return None if view is None else plan_grouped_cleanup(step, view)

    def _step_view(self, step: WorkflowStep, timing: StatusTiming) -> GroupedStepView | None:
        if not self._observed:
            return None
        uid = step.metadata.uid or ""
        alloc = self.allocation_of(step)
        facts = self._gone.get((step.metadata.namespace or "", allocation_name(step) or ""))
        if alloc is not None:
            if not self._backend.observed(alloc):
                return None
            facts = self._facts(alloc)
            if facts is None:  # its paths are invalid: the allocation itself fails, and so will this
                return GroupedStepView(None, None, "the allocation has no valid directories", "", timing)
        script, refusal, tail, log_path, warm = None, None, None, "", None
        if facts is not None:
            log_path = facts.paths.step_log(uid)
            h = facts.handover
            result = h.done.get(uid)
            if uid not in h.handed and result is None and not facts.ended and alloc is not None:
                refusal = check_step_fits(step, alloc)
                if refusal is None:
                    try:
                        script = self._backend.build_step_script(step, alloc)
                    except InvalidStep as e:
                        refusal = f"invalid in StepAllocation {facts.name}: {e}"
                    if alloc.spec.warm and self._backend.runs_warm(step, alloc):
                        warm = build_warm_spec(step)
            if result is not None and result.exit_code not in (None, 0):
                tail = read_log_tail(log_path)
        return GroupedStepView(facts, script, refusal, log_path, timing, log_tail=tail, warm=warm)

    # --- an allocation ---
    def decide_allocation(
        self, alloc: StepAllocation, steps: Sequence[StepSummary], timing: StatusTiming
    ) -> list[Intent] | None:
        view = self._allocation_view(alloc, steps, timing)
        return None if view is None else plan_allocation(alloc, view)

    def decide_allocation_cleanup(
        self, alloc: StepAllocation, steps: Sequence[StepSummary], timing: StatusTiming
    ) -> list[Intent] | None:
        view = self._allocation_view(alloc, steps, timing)
        return None if view is None else plan_allocation_cleanup(alloc, view)

    def _allocation_view(
        self, alloc: StepAllocation, steps: Sequence[StepSummary], timing: StatusTiming
    ) -> AllocationView | None:
        if not self._observed or not self._backend.observed(alloc):
            return None
        uid = alloc.metadata.uid or ""
        paths = self._paths.get(uid)
        job = self._backend.job_of(alloc)
        submitted = self._backend.submitted_of(alloc)
        submit: BackendIntent | None = None
        refusal: tuple[str, str] | None = None
        if isinstance(paths, InvalidStep) or paths is None:
            refusal = ("InvalidSpec", f"invalid allocation: {paths}")
            paths = AllocationPaths("/nonexistent", "/nonexistent", "/nonexistent")
        elif job is None and submitted is None and alloc.metadata.deletion_timestamp is None:
            built = self._backend.build_submit(alloc, paths)
            if isinstance(built, tuple):
                refusal = built
            else:
                submit = built
        return AllocationView(
            paths=paths,
            job=job,
            submitted=submitted,
            submit=submit,
            refusal=refusal,
            cancel=self._backend.build_cancel(alloc),
            steps=steps,
            handover=self._handover.get(uid, UNREADABLE),
            target=self._backend.target_of(alloc),
            log_path=self._backend.agent_log(alloc),
            timing=timing,
        )

    # --- execute ---
    def execute(self, intent: BackendIntent) -> Executed | None:
        """Carry out a hand-over intent; None: not one of them."""
        if isinstance(intent, HandOverStep):
            hand_over(intent.paths, intent.uid, intent.script, intent.warm)
            self._update(intent.paths, handed={intent.uid})
            return DONE
        if isinstance(intent, CancelHandedStep):
            claimed = mark_cancelled(intent.paths, intent.uid)
            self._update(intent.paths, cancelled={intent.uid}, claimed={intent.uid} if claimed else set())
            return Executed(stop=True) if claimed else DONE  # claimed: keep the finalizer until it ends
        if isinstance(intent, CloseAllocation):
            mark_closed(intent.paths)
            self._update(intent.paths, closed=True)
            return DONE
        return None

    def _update(
        self,
        paths: AllocationPaths,
        *,
        handed: set[str] | frozenset[str] = frozenset(),
        cancelled: set[str] | frozenset[str] = frozenset(),
        claimed: set[str] | frozenset[str] = frozenset(),
        closed: bool = False,
    ) -> None:
        """What this process just wrote, in its snapshot until the next read (decisions on watch events
        between two cycles see it)."""
        with self._lock:
            for uid, known in self._paths.items():
                h = self._handover.get(uid)
                if known == paths and h is not None and h.readable:
                    self._handover[uid] = replace(
                        h,
                        handed=h.handed | handed,
                        cancelled=h.cancelled | cancelled,
                        claimed=h.claimed | claimed,
                        closed=h.closed or closed,
                    )
