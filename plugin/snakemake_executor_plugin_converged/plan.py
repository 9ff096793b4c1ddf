"""The plan upfront: every job of the DAG with its backend, target and reason, and the groups of
consecutive steps that share a resource shape (where one allocation could serve several steps).
Pure: entries in, text out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from converged_bridge.routing import RouteDecision
from snakemake_executor_plugin_converged.resources import StepResources


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


@dataclass(frozen=True)
class PlanGroup:
    backend: str
    target: str
    shape: str
    entries: tuple[PlanEntry, ...]


def order_entries(entries: Sequence[PlanEntry]) -> list[PlanEntry]:
    """Topological level first, then rule, then job id: the order the steps can start in."""
    return sorted(entries, key=lambda e: (e.level, e.rule, e.jobid))


def build_plan_groups(entries: Sequence[PlanEntry]) -> list[PlanGroup]:
    """Consecutive steps (in `order_entries` order) with the same backend, target and shape."""
    groups: list[PlanGroup] = []
    for entry in order_entries(entries):
        last = groups[-1] if groups else None
        if last is not None and (last.backend, last.target, last.shape) == entry.shape_key:
            groups[-1] = PlanGroup(last.backend, last.target, last.shape, (*last.entries, entry))
        else:
            groups.append(PlanGroup(*entry.shape_key, (entry,)))
    return groups


def render_plan(entries: Sequence[PlanEntry], *, run_id: str, namespace: str, local_jobs: int = 0) -> str:
    """The plan as text: a table of every job, then the groups."""
    ordered = order_entries(entries)
    rows = [("LEVEL", "JOB", "RULE", "WILDCARDS", "BACKEND", "TARGET", "DECISION", "REASON")]
    for e in ordered:
        reason = e.decision.reason
        rows.append(
            (
                str(e.level),
                str(e.jobid),
                e.rule,
                e.wildcards or "-",
                e.backend,
                e.decision.target,
                e.decision.decision.value,
                reason,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [f"converged plan for run {run_id} in namespace {namespace}: {len(ordered)} jobs", ""]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        )
    lines.append("")
    groups = build_plan_groups(ordered)
    lines.append(f"{len(groups)} groups of consecutive steps by resource shape:")
    for number, group in enumerate(groups, start=1):
        jobs = ", ".join(f"{e.rule}#{e.jobid}" for e in group.entries)
        where = f"{group.backend} {group.target}"
        lines.append(f"  [{number}] {where} | {group.shape} | {len(group.entries)} steps: {jobs}")
    if local_jobs:
        lines.append(f"  and {local_jobs} jobs snakemake runs itself (localrules, rules without a command)")
    refused = [e for e in ordered if e.decision.backend is None]
    if refused:
        lines.append("")
        lines.append(f"{len(refused)} jobs cannot run anywhere; the run would stop at the first of them.")
    return "\n".join(lines) + "\n"
