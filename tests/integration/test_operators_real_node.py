"""JobSet and MPIJob steps that really run: on the real kubelet node, driven by the real JobSet
controller and MPI Operator, admitted by Kueue, their pods finding each other through CoreDNS."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import TEST_LABELS, ControllerProcess, eventually, kubectl
from tests.integration.test_controller_real_node import IMAGE, NS
from tests.integration.test_controller_slurm import TERMINAL, create, get, wait_phase

pytestmark = pytest.mark.integration


def operator_step(name: str, operator: str, command: list[str], **resources: Any) -> dict[str, Any]:
    return {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "WorkflowStep",
        "metadata": {"name": name, "namespace": NS, "labels": dict(TEST_LABELS)},
        "spec": {
            "workflow": {"runId": "it-operators", "rule": f"{operator} step", "jobId": 1},
            "backend": "kueue",
            "operator": operator,
            "image": IMAGE,
            "command": command,
            "resources": {"cpus": 1, "memMiB": 256, "runtimeMinutes": 5, **resources},
        },
    }


def pods(env: dict[str, str], selector: str) -> list[dict[str, Any]]:
    return json.loads(kubectl(env, "get", "pods", "-n", NS, "-l", selector, "-o", "json"))["items"]  # type: ignore[no-any-return]


def test_a_jobset_step_runs_two_pods_that_resolve_each_other(
    real_controller: ControllerProcess, cluster_env: dict[str, str], workdir: Path
) -> None:
    env, name = cluster_env, f"js-{uuid.uuid4().hex[:6]}"
    out = workdir / name
    out.mkdir()
    out.chmod(0o1777)  # the pods run as the namespace's user
    # each pod writes the address the other pod's name resolves to (cluster DNS), once it has one
    peer = f"{name}-main-0-$((1 - JOB_COMPLETION_INDEX)).{name}"
    script = (
        f"for _ in $(seq 120); do a=$(getent hosts {peer} | cut -d' ' -f1); [ -n \"$a\" ] && break; "
        f'sleep 0.5; done; echo "$a" > {out}/pod-$JOB_COMPLETION_INDEX.txt'
    )
    create(env, operator_step(name, "jobset", ["/bin/sh", "-c", script], nodes=2, tasks=2))
    status = wait_phase(env, NS, name, TERMINAL, timeout=180)["status"]
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    assert status["backendRef"]["kind"] == "JobSet" and status["backendRef"]["workload"]
    written = {p.name: p.read_text().strip() for p in out.iterdir()}
    assert sorted(written) == ["pod-0.txt", "pod-1.txt"]
    assert all(address.startswith("10.85.0.") for address in written.values()), written
    assert written["pod-0.txt"] != written["pod-1.txt"]


def test_an_mpijob_step_runs_mpirun_across_two_workers(
    real_controller: ControllerProcess, cluster_env: dict[str, str], workdir: Path
) -> None:
    env, name = cluster_env, f"mpi-{uuid.uuid4().hex[:6]}"
    out = workdir / f"{name}.txt"
    # the step's command runs once, in the launcher; $CONVERGED_MPIRUN starts the ranks on the workers
    rank = 'echo "rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE on $(hostname)"'
    script = f"$CONVERGED_MPIRUN sh -c '{rank}' > {out}"
    create(env, operator_step(name, "mpijob", ["/bin/sh", "-c", script], nodes=2, tasks=2))
    status = wait_phase(env, NS, name, TERMINAL, timeout=240)["status"]
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    assert status["backendRef"]["kind"] == "MPIJob"
    lines = sorted(out.read_text().splitlines())
    assert [ln.split(" on ")[0] for ln in lines] == ["rank 0 of 2", "rank 1 of 2"], lines
    hosts = {ln.split(" on ")[1] for ln in lines}
    assert hosts == {f"{name}-worker-0", f"{name}-worker-1"}, lines  # one rank on each worker


def test_an_mpijob_step_that_fails_reports_its_exit_code_and_output(
    real_controller: ControllerProcess, cluster_env: dict[str, str]
) -> None:
    env, name = cluster_env, f"mpi-fail-{uuid.uuid4().hex[:6]}"
    create(
        env,
        operator_step(name, "mpijob", ["/bin/sh", "-c", "echo lammps blew up >&2; exit 3"], nodes=2, tasks=2),
    )
    status = wait_phase(env, NS, name, TERMINAL, timeout=240)["status"]
    assert (status["phase"], status.get("exitCode")) == ("Failed", 3), status
    assert "lammps blew up" in status.get("logTail", "")


def test_an_mpijob_beyond_the_quota_waits_with_kueues_words(
    real_controller: ControllerProcess, cluster_env: dict[str, str]
) -> None:
    env, name = cluster_env, f"mpi-big-{uuid.uuid4().hex[:6]}"
    create(env, operator_step(name, "mpijob", ["true"], nodes=3, tasks=3))  # 3 CPUs; the queue has 2

    def queued() -> dict[str, Any] | None:
        status = (get(env, NS, name) or {}).get("status", {})
        return status if status.get("phase") == "Queued" and "quota" in (status.get("reason") or "") else None

    status = eventually("the MPIJob step to wait for quota", queued, 60)
    assert "insufficient" in status["reason"] or "exceed" in status["reason"], status
    kubectl(env, "delete", "wfs", name, "-n", NS, "--timeout=60s")


def test_deleting_a_running_mpijob_step_removes_launcher_and_workers(
    real_controller: ControllerProcess, cluster_env: dict[str, str]
) -> None:
    env, name = cluster_env, f"mpi-del-{uuid.uuid4().hex[:6]}"
    create(
        env, operator_step(name, "mpijob", ["/bin/sh", "-c", "$CONVERGED_MPIRUN sleep 300"], nodes=2, tasks=2)
    )
    wait_phase(env, NS, name, {"Running"}, timeout=180)
    selector = f"training.kubeflow.org/job-name={name}"
    roles = {p["metadata"]["labels"].get("training.kubeflow.org/job-role") for p in pods(env, selector)}
    assert roles == {"launcher", "worker"}
    kubectl(env, "delete", "wfs", name, "-n", NS, "--timeout=60s")
    assert get(env, NS, name) is None
    eventually(
        "the MPIJob to be gone",
        lambda: not kubectl(env, "get", "mpijob", name, "-n", NS, "--ignore-not-found"),
        60,
    )
    eventually("its launcher and workers to be gone", lambda: not pods(env, selector), 120)
