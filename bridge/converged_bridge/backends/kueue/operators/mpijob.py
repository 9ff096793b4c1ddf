"""kubeflow.org MPIJob (v2beta1, the MPI Operator v0.8): a launcher over `nodes` worker pods.

The launcher runs the step's command once, as a Slurm batch script does on the first node of its
allocation; the command launches the ranks itself. `CONVERGED_MPIRUN` tells it how, on every backend:
here `mpirun -np <tasks>` (OpenMPI reads the operator's hostfile and reaches the workers over SSH, by
the names cluster DNS gives them). Launcher and workers run as the namespace's identity, like every
other pod of the step, so what the ranks write belongs to the user, and under Pod Security `restricted`
(never root, no capabilities, no privilege escalation, seccomp RuntimeDefault; common.py):
- OpenSSH wants a passwd entry for that uid, which an image does not have: both wrap their command in
  nss_wrapper (libnss-wrapper) with a passwd that has one;
- a worker's sshd runs as that user (it needs no privilege to let in only its own user: no privilege
  separation, no PAM), on port 2222 (no capability to bind below 1024), with a host key made at start;
- the operator mounts the job's SSH keys at sshAuthMountPath (root's ~/.ssh only gets mode 0600): the
  launcher copies the private key to a 0600 file that the image's ssh_config names (IdentityFile), and
  sshd reads authorized_keys there.
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
SSH_DIR = "/var/run/converged-ssh"  # sshAuthMountPath: the job's keys, mounted by the operator
SSH_PORT = 2222  # the image's ssh_config says so too (Port): an unprivileged sshd cannot bind 22
IDENTITY = "/tmp/.converged-ssh-id"  # the image's ssh_config names it (IdentityFile)
# A passwd (and group) with an entry for whoever the pod runs as, through nss_wrapper; HOME in /tmp.
_IDENTITY_SETUP = (
    'export HOME=/tmp USER="${USER:-mpi}"; '
    "cp /etc/passwd /tmp/passwd; cp /etc/group /tmp/group; "
    'if ! grep -q "^[^:]*:[^:]*:$(id -u):" /etc/passwd; then '
    'echo "$USER:x:$(id -u):$(id -g)::/tmp:/bin/sh" >> /tmp/passwd; '
    'echo "$USER:x:$(id -g):" >> /tmp/group; fi; '
    "export LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD=/tmp/passwd NSS_WRAPPER_GROUP=/tmp/group; "
)
# sshd for the launcher's mpirun: as the pod's user (never root), StrictModes off (a Secret volume's
# directory is mode 1777), the job's authorized_keys
WORKER_COMMAND = [
    "/bin/sh",
    "-c",
    _IDENTITY_SETUP
    + "ssh-keygen -q -t ed25519 -N '' -f /tmp/ssh_host_ed25519_key && "
    + f"exec /usr/sbin/sshd -De -p {SSH_PORT} -h /tmp/ssh_host_ed25519_key -o PidFile=/tmp/sshd.pid "
    + f"-o StrictModes=no -o UsePAM=no -o AuthorizedKeysFile={SSH_DIR}/authorized_keys",
]
# Workers are Ready before the launcher is made (WaitForWorkersReady), but the names cluster DNS gives
# them may come a moment later: mpirun's ssh then fails at once ("Could not resolve hostname", exit 255;
# seen on a freshly started site). The launcher waits, a minute at most, until every host of the
# operator's hostfile resolves.
WAIT_FOR_WORKERS = (
    'hostfile="${OMPI_MCA_orte_default_hostfile:-/etc/mpi/hostfile}"; '
    'for h in $(cut -d" " -f1 "$hostfile" 2>/dev/null); do i=0; '
    'until getent hosts "$h" >/dev/null || [ "$i" -ge 120 ]; do i=$((i + 1)); sleep 0.5; done; done; '
)
# the launcher: the same identity, the workers' names resolved, the private key copied to a file only its
# user may read, then the step's command (its argv follows `sh -c ... converged-launcher`)
LAUNCHER_PREFIX = [
    "/bin/sh",
    "-c",
    _IDENTITY_SETUP + WAIT_FOR_WORKERS + f'install -m 600 {SSH_DIR}/id_rsa {IDENTITY} && exec "$@"',
    "converged-launcher",
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
    launcher["command"] = [*LAUNCHER_PREFIX, *launcher["command"]]
    launcher["env"] = [
        *launcher.get("env", []),
        {"name": MPIRUN_ENV, "value": f"mpirun -np {r.tasks}"},
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
            "sshAuthMountPath": SSH_DIR,
            "mpiReplicaSpecs": {
                "Launcher": {
                    "replicas": 1,
                    "restartPolicy": "Never",
                    "template": {
                        "metadata": pod_metadata,
                        "spec": build_pod_spec(step, site, [launcher]),
                    },
                },
                "Worker": {
                    "replicas": r.nodes,
                    "restartPolicy": "Never",
                    "template": {
                        "metadata": pod_metadata,
                        "spec": build_pod_spec(step, site, [worker]),
                    },
                },
            },
        },
    }
    return BuiltObject(MPIJOBS, name, body)


KIND = OperatorKind(Operator.MPIJOB, MPIJOBS, BackendKind.MPIJOB, build_mpijob, mpi=True)
