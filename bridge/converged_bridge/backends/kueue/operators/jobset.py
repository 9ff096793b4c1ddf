"""jobset.x-k8s.io JobSet: a replicated Job, all of whose pods start together."""

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
from converged_bridge.wire import JOBSETS


def build_jobset(step: WorkflowStep, site: KueueSite) -> BuiltObject:
    """A suspended JobSet with one replicated Job (`main`) and no restarts."""
    name = build_object_name(step)
    job_spec = build_job_spec(step, site)
    job_spec.pop("suspend")  # JobSet suspends its Jobs itself
    body = {
        "apiVersion": JOBSETS.api_version,
        "kind": JOBSETS.kind,
        "metadata": build_metadata(step, site, name),
        "spec": {
            "suspend": True,
            "failurePolicy": {"maxRestarts": 0},
            "replicatedJobs": [{"name": "main", "replicas": 1, "template": {"spec": job_spec}}],
        },
    }
    return BuiltObject(JOBSETS, name, body)


KIND = OperatorKind(Operator.JOBSET, JOBSETS, BackendKind.JOBSET, build_jobset)
