"""Acceptance of the local cluster's second Slurm cluster, hpc2, as `deploy/local/cluster` runs it:
status and env name both clusters, hpc2's daemons run pivot_root'ed into the sid root (not chrooted:
user namespaces work there, so Apptainer does), its commands run through `cluster hpc2-exec`, and the
two clusters do not see each other."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import cluster

pytestmark = pytest.mark.integration
RUN = Path(os.environ.get("CONVERGED_LOCAL_DIR", "/var/lib/converged-local")) / "run"


def hpc2_exec(env: dict[str, str], *argv: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [*shlex.split(env["CONVERGED_HPC2_EXEC"]), *(["--user", user] if user else []), "--", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_status_shows_both_clusters_healthy(cluster_env: dict[str, str]) -> None:
    rows = {r["component"]: r for r in json.loads(cluster("status", "--json", check=False).stdout)}
    for name in ("slurmctld", "slurmrestd", "hpc2 slurmdbd", "hpc2 slurmctld", "hpc2 slurmrestd"):
        assert rows[name]["healthy"], rows[name]
    for node in ("h2n1", "h2n2", "h2big"):
        assert rows[f"hpc2 slurmd {node}"]["healthy"], rows[f"hpc2 slurmd {node}"]
    assert rows["hpc2 slurmrestd"]["detail"].startswith("Slurm 26.05.")
    assert rows["hpc2 apptainer"]["healthy"] and "step.sif as nobody" in rows["hpc2 apptainer"]["detail"]
    assert rows["site daemon"]["detail"].endswith("SlurmClusters mirrored: hpc1, hpc2"), rows["site daemon"]


def test_env_names_both_clusters(cluster_env: dict[str, str]) -> None:
    assert cluster_env["SLURMRESTD_URL"] != cluster_env["SLURMRESTD_URL_HPC2"]
    assert cluster_env["SLURM_JWT"] != cluster_env["SLURM_JWT_HPC2"]
    assert cluster_env["SLURM_CLUSTER_HPC2"] == "hpc2"
    assert cluster_env["CONVERGED_SITE_SLURM_CLUSTERS"] == "hpc1,hpc2"


def test_hpc2_exec_runs_as_the_user_and_passes_the_exit_status(cluster_env: dict[str, str]) -> None:
    cp = hpc2_exec(cluster_env, "sh", "-c", "id -un; exit 5", user="bob")
    assert (cp.returncode, cp.stdout) == (5, "bob\n"), cp.stderr


def test_each_cluster_has_its_own_slurm(cluster_env: dict[str, str]) -> None:
    two = hpc2_exec(cluster_env, "sinfo", "--noheader", "--format=%P %D %l %N")
    assert two.stdout.split("\n")[:3] == ["cpu* 2 1-00:00:00 h2n[1-2]", "long 2 7-00:00:00 h2n[1-2]",
                                          "bigmem 1 2-00:00:00 h2big"]  # fmt: skip
    assert hpc2_exec(cluster_env, "sinfo", "--version").stdout.startswith("slurm-wlm 26.05.")
    one = subprocess.run(["sinfo", "--noheader", "--format=%N"], capture_output=True, text=True, check=True)
    assert one.stdout == "c[1-2],g1\n"  # the host's commands are hpc1's


def test_hpc2_daemons_are_pivot_rooted_so_user_namespaces_work(cluster_env: dict[str, str]) -> None:
    """A chrooted process is refused new user namespaces; one whose root is its mount namespace's root
    is not. From the host, a chrooted daemon's root reads as the chroot's path; hpc2's read as `/`."""
    pid = int((RUN / "hpc2-slurmd-h2n1.pid").read_text().split()[0])
    assert os.readlink(f"/proc/{pid}/root") == "/"
    assert os.stat(f"/proc/{pid}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino
    # its "/" is the sid tree, read-only (mountinfo fields: id parent dev root mount-point options)
    (root,) = [
        ln.split() for ln in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if ln.split()[4] == "/"
    ]
    sid = Path(os.environ.get("CONVERGED_CACHE", "/var/cache/converged")).resolve()
    assert root[3].startswith(f"{sid}/slurm-sid-") and root[3].endswith("/root") and root[5].startswith("ro,")
    cp = hpc2_exec(cluster_env, "unshare", "--user", "--map-root-user", "id", "-u", user="alice")
    assert (cp.returncode, cp.stdout) == (0, "0\n"), cp.stderr
