"""metav1.Condition and the pure helpers that keep a list of them the way Kubernetes does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field

from converged_bridge.api.base import StatusModel

CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """One observation of an aspect of an object (metav1.Condition)."""

    type: Annotated[str, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    status: ConditionStatus
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    last_transition_time: AwareDatetime
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    message: Annotated[str, Field(max_length=32768)]


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of type `type_`, if present."""
    return next((c for c in conditions if c.type == type_), None)


def set_condition(conditions: Sequence[Condition], new: Condition, now: datetime) -> list[Condition]:
    """`conditions` with `new` set in place of the condition of the same type (appended if absent).

    Kubernetes semantics (apimachinery meta.SetStatusCondition): lastTransitionTime moves to `now`
    only when the condition is new or its status changes; otherwise the previous time is kept while
    reason, message and observedGeneration follow `new`. `new.last_transition_time` is ignored, so a
    caller cannot fake a transition. The input is not modified; order is preserved.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    previous = find_condition(conditions, new.type)
    if previous is None:
        return [*conditions, new.model_copy(update={"last_transition_time": now})]
    transition_time = now if previous.status != new.status else previous.last_transition_time
    updated = new.model_copy(update={"last_transition_time": transition_time})
    return [updated if c.type == new.type else c for c in conditions]


def remove_condition(conditions: Sequence[Condition], type_: str) -> list[Condition]:
    """`conditions` without the condition of type `type_`."""
    return [c for c in conditions if c.type != type_]
