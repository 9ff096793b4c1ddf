"""kubeflow.org MPIJob (v2beta1, the MPI Operator): a launcher running mpirun over worker pods."""

from __future__ import annotations

from typing import Any

from converged_bridge.api.workflowstep import BackendKind, Operator, WorkflowStep
from converged_bridge.backends.kueue.operators.common import (
    BuiltObject,
    KueueSite,
    build_container,
    build_metadata,
    build_object_name,
    build_pod_spec,
    deadline_seconds,
)
from converged_bridge.backends.kueue.operators.kind import OperatorKind
from converged_bridge.wire import MPIJOBS


def build_mpijob(step: WorkflowStep, site: KueueSite) -> BuiltObject:
    """A suspended MPIJob: a launcher running the step's command with mpirun over `nodes` workers."""
    name = build_object_name(step)
    r = step.spec.resources
    slots = max(1, r.tasks // r.nodes)
    worker = build_container(step, site, name="worker")
    worker["command"] = ["/usr/sbin/sshd", "-De"]
    launcher = build_container(step, site, name="launcher")
    launcher["command"] = ["mpirun", "-n", str(r.tasks), *step.spec.command]
    launcher["resources"] = {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }
    run_policy: dict[str, Any] = {"suspend": True, "backoffLimit": 0, "cleanPodPolicy": "Running"}
    deadline = deadline_seconds(step)
    if deadline:
        run_policy["activeDeadlineSeconds"] = deadline
    body = {
        "apiVersion": MPIJOBS.api_version,
        "kind": MPIJOBS.kind,
        "metadata": build_metadata(step, site, name),
        "spec": {
            "slotsPerWorker": slots,
            "runPolicy": run_policy,
            "mpiReplicaSpecs": {
                "Launcher": {
                    "replicas": 1,
                    "restartPolicy": "Never",
                    "template": {"spec": build_pod_spec(step, site, [launcher])},
                },
                "Worker": {
                    "replicas": r.nodes,
                    "restartPolicy": "Never",
                    "template": {"spec": build_pod_spec(step, site, [worker])},
                },
            },
        },
    }
    return BuiltObject(MPIJOBS, name, body)


KIND = OperatorKind(Operator.MPIJOB, MPIJOBS, BackendKind.MPIJOB, build_mpijob, mpi=True)
