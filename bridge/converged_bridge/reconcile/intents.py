"""What a decision asks for. The controller applies the generic intents below itself and hands every
`BackendIntent` to the backend unit of the step; nothing else changes the world."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from converged_bridge.api.stepallocation import StepAllocationStatus
from converged_bridge.api.workflowstep import WorkflowStepStatus


@dataclass(frozen=True)
class AddFinalizer:
    pass


@dataclass(frozen=True)
class RemoveFinalizer:
    pass


@dataclass(frozen=True)
class WriteStatus:
    status: WorkflowStepStatus


@dataclass(frozen=True)
class WriteAllocationStatus:
    """A StepAllocation's status (the counterpart of WriteStatus for the allocation kind)."""

    status: StepAllocationStatus


@dataclass(frozen=True)
class Emit:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class BackendIntent:
    """Base of the intents only a backend can carry out (submit, cancel, create, delete)."""


Intent = AddFinalizer | RemoveFinalizer | WriteStatus | WriteAllocationStatus | Emit | BackendIntent


@dataclass(frozen=True)
class Executed:
    """What carrying out a BackendIntent means for the rest of the step's plan.

    `then`: apply these instead of the rest (a refusal's Failed status, say); `stop`: stop here and
    decide again after the next observation (a transient failure, a cancel still to go through);
    `decide_again`: the backend learnt something the plan could not know (a new job id): decide now.
    """

    then: tuple[Intent, ...] = ()
    stop: bool = False
    decide_again: bool = False


DONE = Executed()
