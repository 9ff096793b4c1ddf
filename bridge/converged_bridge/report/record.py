"""A WorkflowStep as the report reads it: where it ran, what it held, when it was created, submitted,
started and ended, and what the plan said (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from converged_bridge.api.conditions import ConditionStatus, find_condition
from converged_bridge.api.workflowstep import Resources, WorkflowStep
from converged_bridge.history import StepHistoryNotes, parse_history_annotations
from converged_bridge.routing import STANDARD_RULES, RuleBook
from converged_bridge.schedule import StepPlanNotes, parse_plan_annotations
from converged_bridge.wire import GROUP_LABEL


@dataclass(frozen=True)
class StepRecord:
    name: str
    rule: str
    job_id: int
    backend: str
    target: str  # `cluster/partition` or `namespace/queue`, as the plan names targets
    shape: Resources
    image: str | None = None
    wildcards: Mapping[str, str] = field(default_factory=dict)
    phase: str = "Pending"
    created: datetime | None = None
    submitted: datetime | None = None  # its backend job or object exists
    started: datetime | None = None
    ended: datetime | None = None
    plan: StepPlanNotes = field(default_factory=StepPlanNotes)
    group: str | None = None  # the allocation it ran in (label converged.dev/group), if any
    history: StepHistoryNotes | None = None  # what the plugin noted for the history (annotation)
    reason: str | None = None  # the backend's words for how it ended (TIMEOUT, OOMKilled ...)
    exit_code: int | None = None

    @property
    def label(self) -> str:
        """`rule` with its wildcard values, how a person names the step."""
        values = ",".join(self.wildcards.values())
        return f"{self.rule} ({values})" if values else self.rule


def step_target(step: WorkflowStep, rules: RuleBook = STANDARD_RULES) -> str:
    """The step's target as `RouteDecision.target` spells it (its backend's rules)."""
    return rules.rules_for(step.spec.backend).step_target(step)


def map_step_record(step: WorkflowStep) -> StepRecord:
    submitted = find_condition(step.status.conditions, "Submitted")
    return StepRecord(
        name=step.metadata.name or "",
        rule=step.spec.workflow.rule,
        job_id=step.spec.workflow.job_id,
        backend=step.spec.backend.value,
        target=step_target(step),
        shape=step.spec.resources,
        image=step.spec.image,
        wildcards=dict(step.spec.workflow.wildcards),
        phase=step.status.phase.value if step.status.phase else "Pending",
        created=step.metadata.creation_timestamp,
        submitted=submitted.last_transition_time
        if submitted is not None and submitted.status == ConditionStatus.TRUE
        else None,
        started=step.status.start_time,
        ended=step.status.completion_time,
        plan=parse_plan_annotations(step.metadata.annotations, step.spec.workflow.job_id),
        group=step.metadata.labels.get(GROUP_LABEL) or None,
        history=parse_history_annotations(step.metadata.annotations),
        reason=step.status.reason,
        exit_code=step.status.exit_code,
    )


def map_run_records(objects: Iterable[Mapping[str, Any]]) -> tuple[list[StepRecord], list[str]]:
    """The records of a run's WorkflowSteps (as the API returns them), by job id then name, and the
    names of the objects that are not valid WorkflowSteps (left out)."""
    records, invalid = [], []
    for obj in objects:
        try:
            records.append(map_step_record(WorkflowStep.model_validate(obj)))
        except ValidationError:
            invalid.append(str((obj.get("metadata") or {}).get("name") or "?"))
    return sorted(records, key=lambda r: (r.job_id, r.name)), sorted(invalid)


def run_start(records: Sequence[StepRecord]) -> datetime | None:
    """When the run began: its first step's creation (the plan's time 0)."""
    return min((r.created for r in records if r.created is not None), default=None)


def offset(start: datetime | None, moment: datetime | None) -> float | None:
    """Seconds from `start` to `moment`; None when either is unknown."""
    return None if start is None or moment is None else (moment - start).total_seconds()


def running_seconds(record: StepRecord) -> float | None:
    """How long the step ran (start to end); None unless both are known."""
    seconds = offset(record.started, record.ended)
    return max(0.0, seconds) if seconds is not None else None
