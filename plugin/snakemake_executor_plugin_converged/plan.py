"""The plan upfront: every job of the DAG with its backend, target and reason, its group and estimated
start and end, then the groups of consecutive steps that share a resource shape (where one allocation
could serve several steps), the estimated makespan and CPU/memory/GPU-hours. Pure: entries in, text out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from converged_bridge.report.text import format_duration, render_usage_table
from converged_bridge.routing import RouteDecision
from snakemake_executor_plugin_converged.resources import StepResources

if TYPE_CHECKING:
    from snakemake_executor_plugin_converged.groups import AllocationPlan
    from snakemake_executor_plugin_converged.schedule import PlanSchedule


@dataclass(frozen=True)
class PlanEntry:
    level: int  # topological level: 0 runs first
    jobid: int
    rule: str
    wildcards: str
    resources: StepResources
    decision: RouteDecision

    @property
    def backend(self) -> str:
        return self.decision.backend.value if self.decision.backend else "REFUSED"

    @property
    def shape_key(self) -> tuple[str, str, str]:
        return (self.backend, self.decision.target, self.resources.describe(self.decision.backend))


def order_entries(entries: Sequence[PlanEntry]) -> list[PlanEntry]:
    """Topological level first, then rule, then job id: the order the steps can start in."""
    return sorted(entries, key=lambda e: (e.level, e.rule, e.jobid))


def render_plan(
    entries: Sequence[PlanEntry],
    plan: PlanSchedule,
    *,
    run_id: str,
    namespace: str,
    local_jobs: int = 0,
    allocations: Sequence[AllocationPlan] = (),
) -> str:
    """The plan as text: a table of every job, the groups (with the allocation each runs in, if any),
    then the estimate."""
    ordered = order_entries(entries)
    estimates = plan.schedule.estimates
    rows = [
        (
            "LEVEL",
            "JOB",
            "RULE",
            "WILDCARDS",
            "BACKEND",
            "TARGET",
            "GROUP",
            "START",
            "END",
            "RUNTIME",
            "BASIS",
            "DECISION",
        )
    ]
    reasons = ["REASON"]
    for e in ordered:
        est = estimates.get(e.jobid) if e.decision.backend else None
        rows.append(
            (
                str(e.level),
                str(e.jobid),
                e.rule,
                e.wildcards or "-",
                e.backend,
                e.decision.target,
                plan.group_of(e.jobid) or "-",
                format_duration(est.start if est else None),
                format_duration(est.end if est else None),
                format_duration(est.end - est.start if est else None),
                runtime_basis(e, plan),
                e.decision.decision.value,
            )
        )
        reasons.append(e.decision.reason)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"converged plan for run {run_id} in namespace {namespace}: {len(ordered)} jobs", ""]
    for row, reason in zip(rows, reasons, strict=True):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + "  " + reason)
    lines.append("")
    by_group = {a.group: a for a in allocations}
    lines.append(f"{len(plan.groups)} groups of consecutive steps by resource shape:")
    for group in plan.groups:
        known = [estimates[j] for j in group.job_ids if j in estimates]
        span = (
            f"{format_duration(min(e.start for e in known))}-{format_duration(max(e.end for e in known))}"
            if known
            else "-"
        )
        jobs = ", ".join(f"{e.rule}#{e.jobid}" for e in ordered if e.jobid in group.job_ids)
        where = f"{group.backend} {group.target}"
        lines.append(f"  [{group.name}] {where} | {group.shape} | {len(group.job_ids)} steps, {span}: {jobs}")
        alloc = by_group.get(group.name)
        if alloc is not None:
            lines.append(
                f"       -> StepAllocation {alloc.name}: {len(alloc.job_ids)} steps, {alloc.slots} at once, "
                f"time limit {alloc.runtime_minutes} min"
            )
    if local_jobs:
        lines.append(f"  and {local_jobs} jobs snakemake runs itself (localrules, rules without a command)")
    lines.append("")
    lines += render_estimate_notes(ordered, plan)
    refused = [e for e in ordered if e.decision.backend is None]
    if refused:
        lines.append("")
        lines.append(f"{len(refused)} jobs cannot run anywhere; the run would stop at the first of them.")
    return "\n".join(lines) + "\n"


def runtime_basis(entry: PlanEntry, plan: PlanSchedule) -> str:
    """Where a job's runtime in the plan comes from: `history(3,±8%)` (runs seen, spread), `declared`,
    `assumed` (no runtime declared: the plan's default)."""
    learnt = plan.runtime_estimates.get(entry.jobid)
    if learnt is not None:
        return learnt.short()
    return "declared" if entry.resources.shape.runtime_minutes else "assumed"


def render_estimate_notes(ordered: Sequence[PlanEntry], plan: PlanSchedule) -> list[str]:
    """The estimated makespan, what it assumed, and the estimated CPU/memory/GPU-hours."""
    jobs = f"snakemake --jobs {plan.max_running}" if plan.max_running else "no --jobs limit"
    lines = [
        f"estimated makespan {format_duration(plan.schedule.makespan)}: the DAG list-scheduled by "
        f"critical path on the targets' whole capacity (others' work on them not counted), {jobs}"
    ]
    by_id = {e.jobid: e for e in ordered}
    learnt = [e for e in ordered if e.jobid in plan.runtime_estimates]
    declared = len(ordered) - len(learnt) - len(plan.assumed_runtime)
    lines.append(
        f"runtimes: {len(learnt)} jobs from their rules' past runs (rules "
        f"{', '.join(sorted({e.rule for e in learnt})) or '-'}), {declared} from declared runtime limits"
    )
    if plan.assumed_runtime:
        rules = sorted({by_id[j].rule for j in plan.assumed_runtime if j in by_id})
        lines.append(
            f"runtime not declared: {plan.default_runtime_minutes} min assumed "
            f"for {len(plan.assumed_runtime)} jobs "
            f"(rules {', '.join(rules)}; declare runtime=MINUTES per rule, or --default-resources runtime=M)"
        )
    pending: dict[str, set[str]] = {}
    for e in ordered:
        if e.resources.pending:
            pending.setdefault(e.rule, set()).update(e.resources.pending)
    if pending:
        count = sum(1 for e in ordered if e.resources.pending)
        named = "; ".join(f"{rule}: {', '.join(sorted(names))}" for rule, names in sorted(pending.items()))
        lines.append(
            f"not known yet for {count} jobs, evaluated when each is submitted (a function of the workflow, "
            f"or of an input that does not exist yet); routed and estimated without them: {named}"
        )
    oversized = sorted({by_id[j].decision.target for j in plan.schedule.oversized if j in by_id})
    if oversized:
        lines.append(f"bigger than the whole target, simulated alone on it: jobs on {', '.join(oversized)}")
    unknown = sorted(
        {
            by_id[j].decision.target
            for j in plan.schedule.unlimited
            if j in by_id and by_id[j].decision.backend is not None
        }
    )
    if unknown:
        lines.append(f"capacity unknown, not limited in the estimate: {', '.join(unknown)}")
    lines.append("estimated use (resources x estimated running time):")
    lines += ["  " + line for line in render_usage_table(plan.usage)]
    return lines
