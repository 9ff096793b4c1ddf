"""A run's figures, estimate beside measure: makespan and CPU/memory/GPU-hours per backend and target
(pure). The estimate is what the plan wrote on each step; the measure is what its status recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from converged_bridge.report.record import StepRecord, offset, run_start, running_seconds
from converged_bridge.report.rules import RuleRow, render_rule_table
from converged_bridge.report.text import Key, format_duration, render_usage_table
from converged_bridge.schedule import Usage, build_usage, sum_usage


@dataclass(frozen=True)
class RunSummary:
    steps: int
    estimated_steps: int  # steps the plan estimated
    measured_steps: int  # steps that ran (start and end known)
    estimated_makespan: float | None
    measured_makespan: float | None  # first creation to last end
    estimated: Mapping[Key, Usage]
    measured: Mapping[Key, Usage]


def build_run_summary(records: Sequence[StepRecord]) -> RunSummary:
    start = run_start(records)
    planned = [r for r in records if r.plan.estimate is not None]
    ran = [(r, running_seconds(r)) for r in records]
    ran_for = [(r, s) for r, s in ran if s is not None]
    ends = [offset(start, r.ended) for r in records if r.ended is not None]
    return RunSummary(
        steps=len(records),
        estimated_steps=len(planned),
        measured_steps=len(ran_for),
        estimated_makespan=max((r.plan.estimate.end for r in planned if r.plan.estimate), default=None),
        measured_makespan=max((e for e in ends if e is not None), default=None),
        estimated=sum_usage(
            ((r.backend, r.target), build_usage(r.shape, r.plan.estimate.end - r.plan.estimate.start))
            for r in planned
            if r.plan.estimate is not None
        ),
        measured=sum_usage(((r.backend, r.target), build_usage(r.shape, s)) for r, s in ran_for),
    )


def render_run_summary(summary: RunSummary, run_id: str, rules: Sequence[RuleRow] = ()) -> str:
    """The summary as lines of text (the plugin prints it when a run ends); with `rules`, per rule:
    estimate beside measure, requested beside used, and the next plan's estimate."""
    lines = [
        f"converged run {run_id}: {summary.steps} steps, {summary.measured_steps} ran, "
        f"{summary.estimated_steps} estimated by the plan",
        f"makespan: estimated {format_duration(summary.estimated_makespan)}, "
        f"measured {format_duration(summary.measured_makespan)}",
        *render_usage_table(summary.estimated, summary.measured),
    ]
    if rules:
        lines += ["per rule (runtime per step: estimate mean, measured mean; used: the largest):"]
        lines += ["  " + line for line in render_rule_table(rules)]
    return "\n".join(lines) + "\n"
