"""Per rule of a run: the plan's runtime estimate beside the measured one, requested beside used (time,
memory, CPU) and what the next plan will estimate (pure). Used figures of memory and CPU come from the
rules' `benchmark:` files (the WorkflowStep status carries neither); `-` where nothing measured them."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from converged_bridge.history import Estimate, RunSample
from converged_bridge.report.record import StepRecord, running_seconds
from converged_bridge.report.text import format_duration


@dataclass(frozen=True)
class RuleRow:
    rule: str
    steps: int
    ran: int
    estimated_s: float | None  # mean of the plan's per-step runtime estimates
    basis: str  # how the plan estimated them (`declared`, `history 3 runs ±10%`)
    measured_s: float | None  # mean running time
    requested_minutes: int | None  # the largest time request of its steps
    declared_minutes: int | None  # what the rule declares (differs when right-sized)
    used_s: float | None  # the longest running time
    requested_mem_mib: int | None
    declared_mem_mib: int | None
    used_mem_mib: float | None  # the largest measured peak
    cpu_s: float | None  # measured CPU time, summed
    next_estimate: Estimate | None
    retried: int = 0  # steps run again at the declared limits
    time_learnt: bool = False  # some step's time request was right-sized from history
    mem_learnt: bool = False


def build_rule_rows(
    records: Sequence[StepRecord], samples: Sequence[RunSample], next_estimates: Mapping[str, Estimate]
) -> list[RuleRow]:
    """One row per rule, by rule name; `samples`: the run's, as appended to the history."""
    by_rule: dict[str, list[StepRecord]] = {}
    for r in records:
        by_rule.setdefault(r.rule, []).append(r)
    measured = {(s.rule, s.job_id): s for s in samples}
    rows = []
    for rule, members in sorted(by_rule.items()):
        ran = [s for s in (running_seconds(r) for r in members) if s is not None]
        estimates = [r.history.estimate for r in members if r.history and r.history.estimate]
        if not estimates:
            plan = [r.plan.estimate.end - r.plan.estimate.start for r in members if r.plan.estimate]
            estimated, basis = (statistics.fmean(plan) if plan else None), "plan"
        else:
            estimated = statistics.fmean(e.runtime_s for e in estimates)
            basis = statistics.mode(e.describe() for e in estimates)
        notes = [r.history for r in members if r.history]
        figures = [measured[(rule, r.job_id)] for r in members if (rule, r.job_id) in measured]
        peaks = [s.max_rss_mib for s in figures if s.max_rss_mib is not None]
        cpus = [s.cpu_s for s in figures if s.cpu_s is not None]
        rows.append(
            RuleRow(
                rule=rule,
                steps=len(members),
                ran=len(ran),
                estimated_s=estimated,
                basis=basis,
                measured_s=statistics.fmean(ran) if ran else None,
                requested_minutes=_max(r.shape.runtime_minutes for r in members),
                declared_minutes=_max(n.declared_minutes for n in notes),
                used_s=max(ran) if ran else None,
                requested_mem_mib=_max(r.shape.mem_mib for r in members),
                declared_mem_mib=_max(n.declared_mem_mib for n in notes),
                used_mem_mib=max(peaks) if peaks else None,
                cpu_s=sum(cpus) if cpus else None,
                next_estimate=next_estimates.get(rule),
                retried=sum(1 for n in notes if n.declared_retry),
                time_learnt=any(n.sizing.runtime_learnt for n in notes if n.sizing),
                mem_learnt=any(n.sizing.mem_learnt for n in notes if n.sizing),
            )
        )
    return rows


def _max(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def format_request(requested: str, declared: str, learnt: bool) -> str:
    return f"{requested} (declared {declared})" if learnt else requested


def rule_cells(row: RuleRow) -> list[str]:
    """The row as the text and HTML tables show it."""
    minutes = row.requested_minutes
    time_req = format_request(
        f"{minutes}m" if minutes else "-",
        f"{row.declared_minutes}m" if row.declared_minutes else "-",
        row.time_learnt,
    )
    mem_req = format_request(
        f"{row.requested_mem_mib}Mi" if row.requested_mem_mib else "-",
        f"{row.declared_mem_mib}Mi" if row.declared_mem_mib else "-",
        row.mem_learnt,
    )
    nxt = row.next_estimate
    return [
        row.rule,
        f"{row.ran}/{row.steps}" + (f" ({row.retried} retried)" if row.retried else ""),
        f"{format_duration(row.estimated_s)} {row.basis}",
        format_duration(row.measured_s),
        time_req,
        format_duration(row.used_s),
        mem_req,
        f"{row.used_mem_mib:.0f}Mi" if row.used_mem_mib is not None else "-",
        f"{row.cpu_s:.1f}s" if row.cpu_s is not None else "-",
        f"{format_duration(nxt.runtime_s)} {nxt.describe()}" if nxt else "-",
    ]


RULE_HEADER = [
    "RULE",
    "RAN",
    "ESTIMATE (BASIS)",
    "MEASURED",
    "TIME REQUESTED",
    "TIME USED",
    "MEM REQUESTED",
    "MEM USED",
    "CPU USED",
    "NEXT PLAN",
]


def render_rule_table(rows: Sequence[RuleRow]) -> list[str]:
    """Per-rule lines: estimate (mean per step) beside measure (mean), requested beside used (the
    largest), and the next plan's estimate."""
    table = [RULE_HEADER, *(rule_cells(r) for r in rows)]
    widths = [max(len(t[i]) for t in table) for i in range(len(RULE_HEADER))]
    return ["  ".join(c.ljust(w) for c, w in zip(t, widths, strict=True)).rstrip() for t in table]
