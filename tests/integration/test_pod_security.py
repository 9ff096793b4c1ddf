"""Steps under Pod Security `restricted`, on the real site: a namespace of the tests' own enforces it
(conftest.RESTRICTED_NS: the identity alice, the shared directory as its claim converged-shared bound to
a hostPath PersistentVolume, a LocalQueue on the real node), and

- the API server admits, as Pods, every pod template the builders make (Job, JobSet, MPIJob launcher and
  workers, allocation) and refuses yesterday's hostPath pod; the whole objects draw no warning;
- a Kueue step run there reads its own /proc/self/status: NoNewPrivs 1, Seccomp 2 (filter), no
  effective capability, uid alice; the file it writes reaches the shared directory through the claim;
- an MPIJob runs mpirun across two workers there (sshd as alice on port 2222, no privilege);
- a Slurm step under Apptainer reads its own: NoNewPrivs 1, uid alice.

The controller is the tests' own (this checkout's code), not the site's deployed daemon.
"""

from __future__ import annotations

import json
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from converged_bridge.allocation.paths import build_allocation_paths
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.backends.kueue.allocation import build_allocation_job
from converged_bridge.backends.kueue.operators import build_operator_object
from converged_bridge.backends.kueue.operators.common import KueueSite, RunAs
from converged_bridge.backends.kueue.operators.shared import SharedVolume
from tests.integration.conftest import RESTRICTED_NS, TEST_LABELS, ControllerProcess
from tests.integration.test_controller_real_node import IMAGE
from tests.integration.test_controller_slurm import TERMINAL, create, step_manifest, unique, wait_phase

pytestmark = pytest.mark.integration

NS = RESTRICTED_NS
STATUS_FIELDS = "^(Uid|NoNewPrivs|Seccomp|CapEff):"


@pytest.fixture(scope="module")
def restricted_ns(cluster_env: dict[str, str], restricted_namespace: str) -> dict[str, str]:
    return cluster_env


@pytest.fixture(scope="module")
def restricted_controller(
    restricted_ns: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProcess]:
    shared = restricted_ns["CONVERGED_SHARED_DIR"]
    proc = ControllerProcess(
        restricted_ns,
        tmp_path_factory.mktemp("restricted") / "controller.log",
        extra_args=(f"--shared-paths={shared}", "--local-queue=real", f"--namespace={NS}"),
    )
    proc.start()
    yield proc
    proc.stop()


def kubectl_dry_run(env: dict[str, str], obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            f"{env['CONVERGED_LOCAL_BIN']}/kubectl",
            f"--kubeconfig={env['KUBECONFIG']}",
            "create",
            "--dry-run=server",
            "-o",
            "name",
            "-f",
            "-",
        ],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=60,
    )


def kueue_step(name: str, operator: str, command: list[str], **resources: Any) -> dict[str, Any]:
    return {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "WorkflowStep",
        "metadata": {"name": name, "namespace": NS, "labels": dict(TEST_LABELS)},
        "spec": {
            "workflow": {"runId": "it-restricted", "rule": f"{operator} step", "jobId": 1},
            "backend": "kueue",
            "operator": operator,
            "image": IMAGE,
            "command": command,
            "resources": {"cpus": 1, "memMiB": 256, "runtimeMinutes": 5, **resources},
        },
    }


def built_pods(env: dict[str, str]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """role -> (the built object, one pod template of it), as this checkout's builders make them."""
    alice = pwd.getpwnam("alice")
    site = KueueSite(
        default_local_queue="real",
        shared_volumes=(SharedVolume(env["CONVERGED_SHARED_DIR"]),),
        run_as=RunAs(alice.pw_uid, alice.pw_gid, "alice"),
    )
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for operator in ("job", "jobset", "mpijob"):
        manifest = kueue_step(
            f"dry-{operator}", operator, ["true"], **({} if operator == "job" else {"nodes": 2, "tasks": 2})
        )
        manifest["metadata"]["uid"] = str(uuid.uuid4())
        body = build_operator_object(WorkflowStep.model_validate(manifest), site).body
        spec = body["spec"]
        if operator == "job":
            out["job"] = (body, spec["template"]["spec"])
        elif operator == "jobset":
            out["jobset"] = (body, spec["replicatedJobs"][0]["template"]["spec"]["template"]["spec"])
        else:
            for role, replica in spec["mpiReplicaSpecs"].items():
                out[f"mpijob-{role.lower()}"] = (body, replica["template"]["spec"])
    alloc = StepAllocation.model_validate(
        {
            "metadata": {"name": "dry-alloc", "namespace": NS, "uid": str(uuid.uuid4())},
            "spec": {
                "runId": "it-restricted",
                "group": "g",
                "backend": "kueue",
                "image": IMAGE,
                "workingDir": env["CONVERGED_SHARED_DIR"],
                "resources": {"cpus": 1, "memMiB": 256},
                "slots": 1,
                "runtimeMinutes": 5,
                "kueue": {"localQueue": "real"},
            },
        }
    )
    job = build_allocation_job(alloc, site, build_allocation_paths(alloc)).body
    out["allocation"] = (job, job["spec"]["template"]["spec"])
    return out


def as_pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def test_every_built_pod_is_admitted_where_restricted_is_enforced(restricted_ns: dict[str, str]) -> None:
    env = restricted_ns
    pods = built_pods(env)
    assert sorted(pods) == ["allocation", "job", "jobset", "mpijob-launcher", "mpijob-worker"]
    for role, (body, pod) in pods.items():
        admitted = kubectl_dry_run(env, as_pod(f"dry-{role}", pod))
        assert admitted.returncode == 0, (role, admitted.stderr)
        # the owning object (Job, JobSet, MPIJob): Pod Security only warns on those; no warning
        whole = kubectl_dry_run(env, {**body, "metadata": {**body["metadata"], "ownerReferences": []}})
        assert whole.returncode == 0 and "PodSecurity" not in whole.stderr, (role, whole.stderr)
    # the check can fail: yesterday's pod (hostPath, no securityContext) is refused, with the reasons
    old = dict(pods["job"][1])
    old.pop("securityContext")
    old["containers"] = [{k: v for k, v in c.items() if k != "securityContext"} for c in old["containers"]]
    old["volumes"] = [
        {"name": "shared-0", "hostPath": {"path": env["CONVERGED_SHARED_DIR"], "type": "Directory"}}
    ]
    refused = kubectl_dry_run(env, as_pod("dry-old", old))
    assert refused.returncode != 0 and 'violates PodSecurity "restricted:latest"' in refused.stderr
    for reason in (
        'restricted volume type "hostPath"',
        "allowPrivilegeEscalation != false",
        "unrestricted capabilities",
        "seccompProfile",
    ):
        assert reason in refused.stderr, refused.stderr


def read_status(path: Path) -> dict[str, str]:
    fields = (line.split(":", 1) for line in path.read_text().splitlines())
    return {k: v.split()[0] for k, v in fields}


def test_a_kueue_step_runs_without_privileges_under_seccomp(
    restricted_controller: ControllerProcess, restricted_ns: dict[str, str], workdir: Path
) -> None:
    env, name = restricted_ns, unique("pss-job")
    out = workdir / f"{name}.txt"
    create(
        env,
        kueue_step(name, "job", ["/bin/sh", "-c", f"grep -E '{STATUS_FIELDS}' /proc/self/status > {out}"]),
    )
    status = wait_phase(env, NS, name, TERMINAL, timeout=180)["status"]
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    seen = read_status(out)  # written through the claim: the shared directory, as alice
    assert seen == {
        "Uid": str(pwd.getpwnam("alice").pw_uid),
        "NoNewPrivs": "1",
        "Seccomp": "2",
        "CapEff": "0000000000000000",
    }
    assert out.stat().st_uid == pwd.getpwnam("alice").pw_uid


def test_an_mpijob_runs_across_two_workers_under_restricted(
    restricted_controller: ControllerProcess, restricted_ns: dict[str, str], workdir: Path
) -> None:
    env, name = restricted_ns, unique("pss-mpi")
    out = workdir / f"{name}.txt"
    # each rank says where it runs and with which rights (sshd started it on its worker as alice)
    rank = (
        'echo "rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE on $(hostname)'
        ' $(grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status | tr -s "[:space:]" " ")"'
    )
    script = f"$CONVERGED_MPIRUN sh -c '{rank}' > {out}"
    create(env, kueue_step(name, "mpijob", ["/bin/sh", "-c", script], nodes=2, tasks=2))
    status = wait_phase(env, NS, name, TERMINAL, timeout=300)["status"]
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    lines = sorted(out.read_text().splitlines())
    assert [ln.split(" on ")[0] for ln in lines] == ["rank 0 of 2", "rank 1 of 2"], lines
    hosts = {ln.split(" on ")[1].split()[0] for ln in lines}
    assert hosts == {f"{name}-worker-0", f"{name}-worker-1"}, lines
    assert all("NoNewPrivs: 1" in ln and "Seccomp: 2" in ln for ln in lines), lines


def test_a_slurm_step_runs_without_privileges(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("pss-slurm")
    out = workdir / f"{name}.txt"
    command = ["/bin/sh", "-c", f"grep -E '{STATUS_FIELDS}' /proc/self/status > {out}"]
    manifest = step_manifest(
        name, "team-a", command, workdir, cluster="converged-apptainer", image=env["CONVERGED_SLURM_IMAGE"]
    )
    create(env, manifest)
    status = wait_phase(env, "team-a", name, TERMINAL, timeout=240)["status"]
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    seen = read_status(out)
    assert (seen["Uid"], seen["NoNewPrivs"], seen["CapEff"]) == (
        str(pwd.getpwnam("alice").pw_uid),
        "1",
        "0000000000000000",
    ), seen
