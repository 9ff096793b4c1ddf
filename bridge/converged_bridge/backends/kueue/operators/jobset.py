"""jobset.x-k8s.io JobSet: one replicated Job of `nodes` indexed pods, each running the step's command.

Every pod runs the command (JOB_COMPLETION_INDEX tells it which it is) and reaches the others by name:
`<jobset>-main-0-<index>.<jobset>` through the JobSet's headless Service. The fields JobSet's defaulting
webhook would set are set here, so its controller works with or without that webhook.
"""

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
    """A suspended JobSet with one replicated Job (`main`) of `nodes` pods and no restarts."""
    name = build_object_name(step)
    nodes = step.spec.resources.nodes
    job_spec = build_job_spec(step, site)
    job_spec.pop("suspend")  # JobSet suspends its Jobs itself
    job_spec.update(completionMode="Indexed", completions=nodes, parallelism=nodes)
    body = {
        "apiVersion": JOBSETS.api_version,
        "kind": JOBSETS.kind,
        "metadata": build_metadata(step, site, name),
        "spec": {
            "suspend": True,
            "failurePolicy": {"maxRestarts": 0},
            "successPolicy": {"operator": "All"},
            "startupPolicy": {"startupPolicyOrder": "AnyOrder"},
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True, "subdomain": name},
            "replicatedJobs": [{"name": "main", "replicas": 1, "template": {"spec": job_spec}}],
        },
    }
    return BuiltObject(JOBSETS, name, body)


KIND = OperatorKind(Operator.JOBSET, JOBSETS, BackendKind.JOBSET, build_jobset)
