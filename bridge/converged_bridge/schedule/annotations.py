"""The plan on a WorkflowStep: its upstream job ids, its group and its estimate, as small annotations
the plugin writes and the report reads (pure). Annotations, not spec fields: a controller of an older
version validates the spec strictly and would refuse a step carrying a field it does not know."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from converged_bridge.schedule.types import StepEstimate
from converged_bridge.wire import (
    DEPENDS_ON_ANNOTATION,
    ESTIMATE_END_ANNOTATION,
    ESTIMATE_READY_ANNOTATION,
    ESTIMATE_START_ANNOTATION,
    PLAN_GROUP_ANNOTATION,
)

DEPENDS_ON_MAX = 256  # ids listed per step (~1.5 KB at most); the rest are counted as "+N"


@dataclass(frozen=True)
class StepPlanNotes:
    """What a step's annotations say about the plan; `unlisted`: upstream ids left out of the list."""

    upstream: tuple[int, ...] = ()
    unlisted: int = 0
    group: str | None = None
    estimate: StepEstimate | None = None


def build_plan_annotations(
    upstream: Sequence[int], estimate: StepEstimate | None = None, group: str | None = None
) -> dict[str, str]:
    """The annotations of a step with these upstream job ids, estimate and plan group."""
    ids = sorted(set(upstream))
    out: dict[str, str] = {}
    if ids:
        listed = [str(i) for i in ids[:DEPENDS_ON_MAX]]
        if len(ids) > DEPENDS_ON_MAX:
            listed.append(f"+{len(ids) - DEPENDS_ON_MAX}")
        out[DEPENDS_ON_ANNOTATION] = ",".join(listed)
    if group:
        out[PLAN_GROUP_ANNOTATION] = group
    if estimate is not None:
        out[ESTIMATE_READY_ANNOTATION] = str(round(estimate.ready))
        out[ESTIMATE_START_ANNOTATION] = str(round(estimate.start))
        out[ESTIMATE_END_ANNOTATION] = str(round(estimate.end))
    return out


def parse_plan_annotations(annotations: Mapping[str, str], job_id: int) -> StepPlanNotes:
    """The plan notes of step `job_id`; malformed values are left out (they only feed pictures)."""
    upstream: list[int] = []
    unlisted = 0
    for item in (annotations.get(DEPENDS_ON_ANNOTATION) or "").split(","):
        item = item.strip()
        if item.startswith("+") and item[1:].isdigit():
            unlisted = int(item[1:])
        elif item.isdigit():
            upstream.append(int(item))
    times = [
        _seconds(annotations.get(key))
        for key in (ESTIMATE_READY_ANNOTATION, ESTIMATE_START_ANNOTATION, ESTIMATE_END_ANNOTATION)
    ]
    ready, start, end = times
    estimate = (
        StepEstimate(job_id, ready, start, end)
        if ready is not None and start is not None and end is not None and ready <= start <= end
        else None
    )
    return StepPlanNotes(
        upstream=tuple(upstream),
        unlisted=unlisted,
        group=annotations.get(PLAN_GROUP_ANNOTATION) or None,
        estimate=estimate,
    )


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None
