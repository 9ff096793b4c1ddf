"""Building a WorkflowStep status: conditions and phase transitions, shared by every backend (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from converged_bridge.api.conditions import Condition, ConditionStatus, set_condition
from converged_bridge.api.workflowstep import BackendRef, Phase, WorkflowStep, WorkflowStepStatus
from converged_bridge.logfiles import LOG_TAIL_MAX
from converged_bridge.reconcile.intents import Emit, Intent, WriteStatus

TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})
_TERMINAL_VALUES = frozenset(p.value for p in TERMINAL_PHASES)
WAITING_PHASES = frozenset({Phase.PENDING, Phase.QUEUED})  # their reason is the backend's "why not yet"
EVENT_PHASES = TERMINAL_PHASES | {Phase.RUNNING}  # a step's Events: it runs, it ended (and refusals)


@dataclass(frozen=True)
class StatusTiming:
    """When a decision is made, and when the controller last wrote the step's status: what the
    pacing of waiting reasons needs (a new pending reason alone is written at most once per refresh)."""

    now: datetime
    written_at: datetime | None = None  # None: never written by this controller (due now)
    pending_reason_refresh: timedelta = timedelta(0)


def is_finished(step: WorkflowStep) -> bool:
    return step.status.phase in TERMINAL_PHASES


def is_settled(obj: dict[str, Any]) -> bool:
    """A raw object (step or allocation) in a terminal phase and not being deleted: no cycle needs to look
    at it again."""
    phase = (obj.get("status") or {}).get("phase")
    return phase in _TERMINAL_VALUES and not obj["metadata"].get("deletionTimestamp")


def plan_ends_step(step: WorkflowStep, intents: Sequence[Intent]) -> bool:
    """`intents` write a terminal phase `step` does not show yet: what users and workflow engines wait
    for, so a poll cycle applies such plans before any other."""
    ends = {i.status.phase for i in intents if isinstance(i, WriteStatus)} & TERMINAL_PHASES
    return bool(ends - {step.status.phase})


def condition(type_: str, ok: bool, reason: str, message: str, generation: int | None) -> Condition:
    return Condition.model_validate(
        {
            "type": type_,
            "status": ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
            "observedGeneration": generation,
            "lastTransitionTime": datetime.fromtimestamp(0).astimezone(),  # replaced by set_condition
            "reason": reason,
            "message": message,
        }
    )


def build_status(
    step: WorkflowStep,
    *,
    phase: Phase,
    reason: str | None,
    message: str,
    now: datetime,
    backend_ref: BackendRef | None = None,
    exit_code: int | None = None,
    start_time: datetime | None = None,
    completion_time: datetime | None = None,
    log_path: str | None = None,
    log_tail: str | None = None,
) -> WorkflowStepStatus:
    """The status `step` should have, keeping what the current status already knows.

    Conditions: `Submitted` (a backend job/object exists), `Running`, `Finished` (terminal phase),
    each with observedGeneration; transition times move only when a condition's status changes.
    """
    gen = step.metadata.generation
    old = step.status
    ref = backend_ref or old.backend_ref
    conditions = list(old.conditions)
    submitted = ref is not None
    conditions = set_condition(
        conditions,
        condition(
            "Submitted",
            submitted,
            "BackendAccepted" if submitted else (_reason_word(reason) or "NotSubmitted"),
            f"{ref.display} runs this step" if ref else message,
            gen,
        ),
        now,
    )
    running = phase == Phase.RUNNING
    conditions = set_condition(
        conditions, condition("Running", running, _reason_word(phase.value), message, gen), now
    )
    finished = phase in TERMINAL_PHASES
    conditions = set_condition(
        conditions,
        condition(
            "Finished", finished, _reason_word(phase.value if finished else "InProgress"), message, gen
        ),
        now,
    )
    return WorkflowStepStatus(
        phase=phase,
        observed_generation=gen,
        conditions=conditions,
        backend_ref=ref,
        exit_code=exit_code if exit_code is not None else old.exit_code,
        reason=reason,
        message=message,
        start_time=start_time or old.start_time,
        completion_time=completion_time or old.completion_time,
        log_path=log_path or old.log_path,
        log_tail=_bounded(log_tail) if log_tail is not None else old.log_tail,
    )


def _bounded(text: str) -> str:
    """At most LOG_TAIL_MAX characters, cut at the front (the end of a log says why it failed)."""
    return text if len(text) <= LOG_TAIL_MAX else text[-LOG_TAIL_MAX:]


def _reason_word(text: str | None) -> str:
    """A condition reason (CamelCase word) from free text such as Slurm's 'OUT_OF_MEMORY'."""
    if not text:
        return ""
    word = "".join(ch for ch in text if ch.isalnum() or ch == "_")
    if not word or not word[0].isalpha():
        word = "R" + word
    return word.rstrip("_") or "Unknown"


def same_status(a: WorkflowStepStatus, b: WorkflowStepStatus) -> bool:
    """Equal as the API would store them (so an unchanged status is never written)."""
    return a.model_dump(mode="json", by_alias=True, exclude_none=True) == b.model_dump(
        mode="json", by_alias=True, exclude_none=True
    )


def only_pending_reason_changed(old: WorkflowStepStatus, new: WorkflowStepStatus) -> bool:
    """`new` is `old` in the same waiting phase with another reason or message, or with what the backend
    tells of a job still waiting (the Kueue Workload's name, an admission or expected start time).

    Slurm alternates a queued job's reason between Priority and Resources, Kueue rewords its quota
    message, names the Workload and admits it: such changes (also in the conditions' reason and
    message) may wait, and are written with the next change that may not: of phase, of the backend
    job or object itself, exit code, completion time, observedGeneration or a condition's status.
    """
    if new.phase not in WAITING_PHASES or new.phase != old.phase:
        return False
    return _without_wording(old) == _without_wording(new)


def _without_wording(status: WorkflowStepStatus) -> dict[str, Any]:
    doc: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc.pop("reason", None)
    doc.pop("message", None)
    doc.pop("startTime", None)
    (doc.get("backendRef") or {}).pop("workload", None)
    for cond in doc.get("conditions", []):
        cond.pop("reason", None)
        cond.pop("message", None)
    return doc


def build_status_patch(current: dict[str, Any], new: WorkflowStepStatus) -> dict[str, Any]:
    """A JSON merge patch turning the stored status `current` into `new`.

    A merge patch leaves keys it does not mention, so fields that `new` no longer has (a pending
    reason once the job runs) are sent as null, which deletes them.
    """
    patch: dict[str, Any] = new.model_dump(mode="json", by_alias=True, exclude_none=True)
    for key in current:
        if key not in patch:
            patch[key] = None
    return patch


def plan_status(
    step: WorkflowStep,
    *,
    phase: Phase,
    reason: str | None,
    message: str,
    backend_ref: BackendRef | None = None,
    exit_code: int | None = None,
    start_time: datetime | None = None,
    completion_time: datetime | None = None,
    log_path: str | None = None,
    log_tail: str | None = None,
    warn: bool = False,
    timing: StatusTiming,
) -> list[Intent]:
    """WriteStatus when the status `step` should have differs from the stored one, plus an Event when
    the step starts Running or ends (Warning for Failed; a waiting phase gets none: the status says
    it). `warn` marks a refusal: its Event carries `reason`. A terminal
    phase without a completion time completes `now`. Shared by every backend.

    A change of only the pending reason (see `only_pending_reason_changed`) is written at most once per
    `timing.pending_reason_refresh` after the step's last status write (`timing.written_at`; None:
    due now); until then the stored status stays. Any other change is written at once."""
    terminal = phase in TERMINAL_PHASES
    now = timing.now
    new = build_status(
        step,
        phase=phase,
        reason=reason,
        message=message,
        now=now,
        backend_ref=backend_ref,
        exit_code=exit_code,
        start_time=start_time,
        completion_time=(completion_time or now) if terminal else None,
        log_path=log_path,
        log_tail=log_tail,
    )
    if same_status(new, step.status):
        return []
    if (
        timing.written_at is not None
        and now - timing.written_at < timing.pending_reason_refresh
        and only_pending_reason_changed(step.status, new)
    ):
        return []
    out: list[Intent] = [WriteStatus(new)]
    if (new.phase != step.status.phase and new.phase in EVENT_PHASES) or warn:
        event_reason = (reason or phase.value) if warn else phase.value
        out.append(Emit("Warning" if phase == Phase.FAILED else "Normal", event_reason, message))
    return out


def plan_failure(step: WorkflowStep, reason: str, message: str, now: datetime) -> list[Intent]:
    """The step failed before its backend ran it (refused, rejected): Failed with a Warning Event."""
    failed = build_status(step, phase=Phase.FAILED, reason=reason, message=message, now=now)
    return [WriteStatus(failed), Emit("Warning", reason, message)]


def build_invalid_status(meta: Mapping[str, Any], message: str, now: datetime) -> dict[str, Any]:
    """The status patch of a stored step whose spec does not validate (it can never run)."""
    return {
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
                "lastTransitionTime": now.isoformat(),
                "observedGeneration": meta.get("generation"),
            }
        ],
    }
