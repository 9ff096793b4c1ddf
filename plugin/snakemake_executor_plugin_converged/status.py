"""What a WorkflowStep's status means to snakemake. Pure: the object (or its absence) in, an outcome out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class State(Enum):
    ACTIVE = "active"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class StepOutcome:
    state: State
    message: str = ""
    backend_job: str | None = None
    log_path: str | None = None


def map_step_outcome(name: str, obj: Mapping[str, Any] | None) -> StepOutcome:
    """Succeeded, failed (with backend job, exit code, reason, log path and tail) or still active."""
    if obj is None:
        return StepOutcome(State.FAILED, f"WorkflowStep {name} was deleted before it finished")
    status = obj.get("status") or {}
    phase = status.get("phase")
    ref = (status.get("backendRef") or {}).get("display")
    log_path = status.get("logPath")
    if phase not in ("Succeeded", "Failed", "Cancelled"):
        return StepOutcome(State.ACTIVE, str(phase or "Pending"), ref, log_path)
    parts = [f"WorkflowStep {name} {phase.lower()}"]
    if ref:
        parts.append(f"backend job {ref}")
    if status.get("exitCode") is not None:
        parts.append(f"exit code {status['exitCode']}")
    if status.get("reason"):
        parts.append(f"reason {status['reason']}")
    message = ", ".join(parts)
    if phase == "Succeeded":
        return StepOutcome(
            State.SUCCEEDED, message + (f", log {log_path}" if log_path else ""), ref, log_path
        )
    if status.get("message"):
        message += f": {status['message']}"
    if log_path:
        message += f"\nlog: {log_path}"
    tail = status.get("logTail")
    if tail:
        message += "\nlast lines of the log:\n" + tail.rstrip("\n")
    return StepOutcome(State.FAILED, message + "\n", ref, log_path)
