"""kubeflow.org MPIJob (v2beta1, the MPI Operator v0.8): a launcher over `nodes` worker pods.

The launcher runs the step's command once, as a Slurm batch script does on the first node of its
allocation; the command launches the ranks itself. `CONVERGED_MPIRUN` tells it how, on every backend:
here `mpirun -np <tasks>` (OpenMPI reads the operator's hostfile and reaches the workers over SSH, by
the names cluster DNS gives them). Workers run sshd; the operator mounts the SSH keys at /root/.ssh.
Launcher and workers run as root whatever the namespace's identity: OpenSSH needs a passwd entry for the
user it logs in as, which an image does not have for a site's uid.
"""

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
    tasks_per_node,
)
from converged_bridge.backends.kueue.operators.kind import OperatorKind
from converged_bridge.wire import MPIJOBS, STEP_UID_LABEL

MPIRUN_ENV = "CONVERGED_MPIRUN"
# sshd needs its privilege-separation directory and host keys, made at start, so any image with
# openssh-server serves as a worker; and StrictModes off: the operator's key Secret is mounted at
# /root/.ssh, and a Secret volume's directory is mode 1777, which StrictModes refuses
WORKER_COMMAND = [
    "/bin/sh",
    "-c",
    "mkdir -p /run/sshd && ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -De -o StrictModes=no",
]


def build_mpijob(step: WorkflowStep, site: KueueSite) -> BuiltObject:
    """A suspended MPIJob: a launcher running the step's command once, `nodes` workers for its ranks."""
    name = build_object_name(step)
    r = step.spec.resources
    slots = tasks_per_node(step)
    worker = build_container(step, site, name="worker")
    worker["command"] = WORKER_COMMAND
    worker.pop("workingDir", None)
    launcher = build_container(step, site, name="launcher")
    launcher["env"] = [
        *launcher.get("env", []),
        {"name": MPIRUN_ENV, "value": f"mpirun -np {r.tasks}"},
        # the pods run as root, which OpenMPI refuses unless told twice
        {"name": "OMPI_ALLOW_RUN_AS_ROOT", "value": "1"},
        {"name": "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "value": "1"},
    ]
    # the launcher waits on mpirun while the workers hold the ranks' CPUs: it asks for memory only
    launcher["resources"] = {"requests": {"memory": "64Mi"}, "limits": {"memory": "512Mi"}}
    run_policy: dict[str, Any] = {"suspend": True, "backoffLimit": 0, "cleanPodPolicy": "Running"}
    deadline = deadline_seconds(step)
    if deadline:
        run_policy["activeDeadlineSeconds"] = deadline
    pod_metadata = {"labels": {STEP_UID_LABEL: step.metadata.uid or ""}}
    body = {
        "apiVersion": MPIJOBS.api_version,
        "kind": MPIJOBS.kind,
        "metadata": build_metadata(step, site, name),
        "spec": {
            "slotsPerWorker": slots,
            "runPolicy": run_policy,
            "mpiImplementation": "OpenMPI",
            "launcherCreationPolicy": "WaitForWorkersReady",  # mpirun finds every sshd listening
            "mpiReplicaSpecs": {
                "Launcher": {
                    "replicas": 1,
                    "restartPolicy": "Never",
                    "template": {
                        "metadata": pod_metadata,
                        "spec": build_pod_spec(step, site, [launcher], as_root=True),
                    },
                },
                "Worker": {
                    "replicas": r.nodes,
                    "restartPolicy": "Never",
                    "template": {
                        "metadata": pod_metadata,
                        "spec": build_pod_spec(step, site, [worker], as_root=True),
                    },
                },
            },
        },
    }
    return BuiltObject(MPIJOBS, name, body)


KIND = OperatorKind(Operator.MPIJOB, MPIJOBS, BackendKind.MPIJOB, build_mpijob, mpi=True)
