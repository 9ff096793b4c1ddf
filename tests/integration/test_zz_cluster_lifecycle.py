"""`cluster status` reports every component; `cluster down` leaves no process of ours; `up` restores.

Named zz so it runs after the other integration tests of a session (it restarts the cluster).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from tests.conftest import cluster

pytestmark = pytest.mark.integration

EXPECTED = {
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "step image",
    "kubelet",
    "kueue",
    "jobset",
    "mpi-operator",
    "coredns",
    "kwok",
    "munge",
    "mariadb",
    "slurmdbd",
    "slurmctld",
    "slurmd c1",
    "slurmd c2",
    "slurmd g1",
    "slurmrestd",
    "apptainer",
    "hpc2 slurmdbd",
    "hpc2 slurmctld",
    "hpc2 slurmd h2n1",
    "hpc2 slurmd h2n2",
    "hpc2 slurmd h2big",
    "hpc2 slurmrestd",
    "hpc2 apptainer",
    "registry",
    "user environment",
    "site daemon",
}
# Debian installs slurmctld, slurmd and slurmstepd as -wlm behind alternatives (the kernel names those);
# hpc2's daemons are sid's, named as their own root sees them: the same paths
SLURM_EXES = {
    "/usr/sbin/munged",
    "/usr/sbin/mariadbd",
    "/usr/sbin/slurmdbd",
    "/usr/sbin/slurmctld",
    "/usr/sbin/slurmctld-wlm",
    "/usr/sbin/slurmd",
    "/usr/sbin/slurmd-wlm",
    "/usr/sbin/slurmstepd",
    "/usr/sbin/slurmstepd-wlm",
    "/usr/sbin/slurmrestd",
}
# the real node's runtime, from Debian (kubelet itself is a cached build)
RUNTIME_EXES = {
    "/usr/bin/tini",
    "/usr/bin/containerd",
    "/usr/bin/containerd-shim",
    "/usr/bin/containerd-shim-runc-v1",
    "/usr/bin/containerd-shim-runc-v2",
    "/usr/sbin/runc",
}


def our_processes(cache: Path) -> list[tuple[int, str]]:
    """Processes running a binary of the local cluster: our cached builds, Slurm's daemons, the
    real node's container runtime."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe").removesuffix(" (deleted)")
        except OSError:
            continue
        if exe.startswith(str(cache) + "/") or exe in SLURM_EXES or exe in RUNTIME_EXES:
            found.append((int(entry.name), exe))
    return found


def eventually_running(job_id: str, timeout: float = 30, squeue: list[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(
            [*(squeue or ["squeue"]), "--noheader", "--jobs", job_id, "--format=%T"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if state == "RUNNING":
            return
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not start within {timeout}s")


def test_status_reports_every_component_healthy(cluster_env: dict[str, str]) -> None:
    rows = json.loads(cluster("status", "--json").stdout)
    assert {r["component"] for r in rows} == EXPECTED
    assert [r for r in rows if not r["healthy"]] == []


def mount_points() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def real_node_mounts(local_dir: Path, netns: set[str]) -> list[str]:
    """Mounts made for the real node's pods: under containerd's and kubelet's state directories
    (container root file systems, sandbox /dev/shm, volumes) and the given network namespaces."""
    owned = (str(local_dir / "containerd") + "/", str(local_dir / "kubelet") + "/")
    return [m for m in mount_points() if m.startswith(owned) or m in netns]


def network_namespaces() -> set[str]:
    return {m for m in mount_points() if m.startswith(("/run/netns/", "/var/run/netns/"))}


def real_node_sleeper(kube_api: client.ApiClient, image: str, shared: str) -> str:
    """A pod sleeping on the real node with the shared directory mounted; returns its name."""
    name = f"lifecycle-sleeper-{uuid.uuid4().hex[:6]}"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_selector={"converged.dev/node-kind": "real"},
            restart_policy="Never",
            containers=[
                client.V1Container(
                    name="sleep",
                    image=image,
                    image_pull_policy="Never",
                    command=["sleep", "300"],
                    volume_mounts=[client.V1VolumeMount(name="shared", mount_path=shared)],
                )
            ],
            volumes=[client.V1Volume(name="shared", host_path=client.V1HostPathVolumeSource(path=shared))],
        ),
    )
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod("default", pod)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if core.read_namespaced_pod(name, "default").status.phase == "Running":
            return name
        time.sleep(0.5)
    pytest.fail(f"pod {name} did not run on the real node within 60s")


def test_down_leaves_no_process_or_mount_of_ours_and_up_restores(
    cluster_env: dict[str, str], kube_api: client.ApiClient
) -> None:
    cache = Path(os.environ.get("CONVERGED_CACHE", "/var/cache/converged"))
    local_dir = Path(cluster_env["CONVERGED_SHARED_DIR"]).parent
    assert our_processes(cache), "the cluster should be running before down"
    # a running job's slurmstepd must not outlive `down` either
    job = subprocess.run(
        ["sbatch", "--parsable", "--partition=cpu", "--output=/dev/null", "--chdir=/tmp", "--wrap=sleep 300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    eventually_running(job)
    # nor hpc2's
    hpc2 = [*shlex.split(cluster_env["CONVERGED_HPC2_EXEC"]), "--"]
    hpc2_job = subprocess.run(
        [*hpc2, "sbatch", "--parsable", "--output=/dev/null", "--chdir=/tmp", "--wrap=sleep 300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    eventually_running(hpc2_job, squeue=[*hpc2, "squeue"])
    # nor may a running pod's containers, sandbox, network namespace or mounts
    netns_before = network_namespaces()
    sleeper = real_node_sleeper(
        kube_api, cluster_env["CONVERGED_STEP_IMAGE"], cluster_env["CONVERGED_SHARED_DIR"]
    )
    pod_netns = network_namespaces() - netns_before
    assert pod_netns, "the sleeping pod should have its own network namespace"
    assert real_node_mounts(local_dir, pod_netns), "the sleeping pod should have mounts"
    cluster("down")
    try:
        assert our_processes(cache) == []
        assert real_node_mounts(local_dir, pod_netns) == []
        assert not Path("/sys/class/net/cvg0").exists(), "the pods' bridge should be gone"
        assert cluster("status", check=False).returncode == 1
    finally:
        cluster("up")
    assert cluster("status").returncode == 0
    # no container or sandbox came back with the cluster: the only ones are those of pods that exist now
    # (the site's daemon Deployment makes its pods again; the sleeper was deleted by down). A pod deleted
    # moments ago may still have its containers while the kubelet stops them: hence the wait.
    ctr = ["ctr", f"--address={cluster_env['CONTAINERD_ADDRESS']}", "--namespace=k8s.io", "containers"]

    def strays() -> set[str | None]:
        pods = set()
        for container in subprocess.run(
            [*ctr, "ls", "-q"], capture_output=True, text=True, check=True
        ).stdout.split():
            info = subprocess.run([*ctr, "info", container], capture_output=True, text=True)
            if info.returncode == 0:  # gone meanwhile: not a stray
                pods.add(json.loads(info.stdout)["Labels"].get("io.kubernetes.pod.name"))
        existing = {p.metadata.name for p in client.CoreV1Api(kube_api).list_pod_for_all_namespaces().items}
        return pods - existing

    deadline = time.monotonic() + 90
    while strays() and time.monotonic() < deadline:
        time.sleep(2)
    assert strays() == set()
    assert (
        not client.CoreV1Api(kube_api)
        .list_namespaced_pod("default", field_selector=f"metadata.name={sleeper}")
        .items
    )
