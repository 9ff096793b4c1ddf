"""batch/v1 Job: one pod running the step's command once."""

from __future__ import annotations

from converged_bridge.api.workflowstep import BackendKind, Operator, WorkflowStep
from converged_bridge.backends.kueue.operators.common import (
    BuiltObject,
    KueueSite,
    build_job_spec,
    build_metadata,
    build_object_name,
)
from converged_bridge.backends.kueue.operators.kind import OperatorKind
from converged_bridge.errors import InvalidStep
from converged_bridge.wire import JOBS


def build_job(step: WorkflowStep, site: KueueSite) -> BuiltObject:
    """A suspended batch/v1 Job running the step's command once."""
    name = build_object_name(step)
    if step.spec.resources.nodes > 1:
        raise InvalidStep(
            "spec.resources.nodes", "a plain Job runs on one node; use operator mpijob or minicluster"
        )
    body = {
        "apiVersion": JOBS.api_version,
        "kind": JOBS.kind,
        "metadata": build_metadata(step, site, name),
        "spec": build_job_spec(step, site),
    }
    return BuiltObject(JOBS, name, body)


KIND = OperatorKind(Operator.JOB, JOBS, BackendKind.JOB, build_job)
