"""`kubectl converged report RUN`: the run's report from its WorkflowSteps (one LIST by the label
converged.dev/run), as one self-contained HTML page, or with --summary its figures as text."""

from __future__ import annotations

from datetime import datetime

from converged_bridge.kube.steps import WorkflowSteps
from converged_bridge.report.html import build_report
from converged_bridge.report.record import map_run_records
from converged_bridge.report.summary import build_run_summary, render_run_summary
from converged_bridge.wire import RUN_LABEL


class NoSuchRun(Exception):
    pass


def read_run_report(
    steps: WorkflowSteps, namespace: str, run_id: str, *, now: datetime, summary: bool = False
) -> str:
    """The report (HTML) or the summary (text) of run `run_id`; raises NoSuchRun when it has no steps."""
    records, invalid = map_run_records(steps.list_run_steps(namespace, run_id))
    if not records:
        raise NoSuchRun(f"no WorkflowSteps labelled {RUN_LABEL}={run_id} in namespace {namespace!r}")
    if summary:
        return render_run_summary(build_run_summary(records), run_id)
    return build_report(records, run_id=run_id, namespace=namespace, generated_at=now, invalid=invalid)
