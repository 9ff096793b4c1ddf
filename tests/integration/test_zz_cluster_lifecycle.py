"""`cluster status` reports every component; `cluster down` leaves no process of ours; `up` restores.

Named zz so it runs after the other integration tests of a session (it restarts the cluster).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import cluster

pytestmark = pytest.mark.integration

EXPECTED = {
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kueue",
    "kwok",
    "munge",
    "mariadb",
    "slurmdbd",
    "slurmctld",
    "slurmd c1",
    "slurmd c2",
    "slurmd g1",
    "slurmrestd",
}
SLURM_EXES = {
    "/usr/sbin/munged",
    "/usr/sbin/mariadbd",
    "/usr/sbin/slurmdbd",
    "/usr/sbin/slurmctld",
    "/usr/sbin/slurmd",
    "/usr/sbin/slurmrestd",
}


def our_processes(cache: Path) -> list[tuple[int, str]]:
    """Processes running a binary of the local cluster: our cached builds or Slurm's daemons."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe").removesuffix(" (deleted)")
        except OSError:
            continue
        if exe.startswith(str(cache) + "/") or exe in SLURM_EXES:
            found.append((int(entry.name), exe))
    return found


def eventually_running(job_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["squeue", "--noheader", "--jobs", job_id, "--format=%T"], capture_output=True, text=True
        ).stdout.strip()
        if state == "RUNNING":
            return
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not start within {timeout}s")


def test_status_reports_every_component_healthy(cluster_env: dict[str, str]) -> None:
    rows = json.loads(cluster("status", "--json").stdout)
    assert {r["component"] for r in rows} == EXPECTED
    assert [r for r in rows if not r["healthy"]] == []


def test_down_leaves_no_process_of_ours_and_up_restores(cluster_env: dict[str, str]) -> None:
    cache = Path(os.environ.get("CONVERGED_CACHE", "/var/cache/converged"))
    assert our_processes(cache), "the cluster should be running before down"
    # a running job's slurmstepd must not outlive `down` either
    job = subprocess.run(
        ["sbatch", "--parsable", "--partition=cpu", "--output=/dev/null", "--chdir=/tmp", "--wrap=sleep 300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    eventually_running(job)
    cluster("down")
    try:
        assert our_processes(cache) == []
        assert cluster("status", check=False).returncode == 1
    finally:
        cluster("up")
    assert cluster("status").returncode == 0
