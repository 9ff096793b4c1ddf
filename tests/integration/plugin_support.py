"""Helpers for the plugin's integration tests: a SlurmCluster whose status carries the live partitions
(what the resource daemon writes; done here from `sinfo` so the router sees real capacity), and a
snakemake process run as the namespace's Slurm user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from tests.integration.conftest import apply_restricted_namespace, eventually, kubectl, slurm_cluster

T = TypeVar("T")
PLUGIN_CLUSTER = "converged-plugin"
PLUGIN_NS = "team-a"  # its Slurm user is alice
REAL_QUEUE = "real"  # LocalQueue in PLUGIN_NS on the ClusterQueue of the real kubelet node
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

# three independent steps that would run for ten minutes: for cancellation tests
SLEEPERS = textwrap.dedent(
    """
    rule all:
        input: expand("slept/{i}.txt", i=range(3))

    rule sleep:
        output: "slept/{i}.txt"
        resources: mem_mb=100, runtime=10
        shell: "sleep 600 && touch {output}"
    """
)


def _interruptible() -> None:
    """In the child: umask 0, and SIGINT handled as in a terminal. A shell starts background jobs with
    SIGINT ignored, and an ignored signal stays ignored across exec: run that way (`make test &`),
    snakemake would never see the Ctrl-C this test sends."""
    os.umask(0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_when(
    env: dict[str, str], workdir: Path, args: list[str], what: str, ready: Callable[[], T | None]
) -> tuple[T, str]:
    """Run snakemake in `workdir` until `ready()` gives a value, then Ctrl-C it (SIGINT) and wait for
    it to exit. Returns that value and snakemake's output."""
    log = workdir / "snakemake.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [SNAKEMAKE, *args],
            cwd=workdir,
            env={**os.environ, "KUBECONFIG": env["KUBECONFIG"]},
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_interruptible,
        )
    try:
        value = eventually(what, ready, timeout=180)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return value, log.read_text()


def apply_plugin_queue(env: dict[str, str]) -> str:
    """LocalQueue `real` in the plugin tests' namespace (Kubernetes steps run on the real node), which
    runs its pods as alice under Pod Security `restricted` and has the shared claim, as a site's user
    namespace does."""
    apply_restricted_namespace(env, PLUGIN_NS, "alice")
    return REAL_QUEUE


def new_flow_dir(env: dict[str, str], kind: str) -> Path:
    """A fresh workflow directory on the shared filesystem, open to the step users."""
    path = Path(env["CONVERGED_SHARED_DIR"]) / kind / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    path.parent.chmod(0o1777)
    path.chmod(0o1777)
    return path


def run_snakemake(
    env: dict[str, str], workdir: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """snakemake in `workdir` with umask 0 (the steps run as other users and write into .snakemake)."""
    return subprocess.run(
        [SNAKEMAKE, *args],
        cwd=workdir,
        env={**os.environ, "KUBECONFIG": env["KUBECONFIG"]},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=lambda: os.umask(0),
    )


def run_steps(env: dict[str, str], run_id: str, namespace: str = PLUGIN_NS) -> list[dict[str, Any]]:
    out = kubectl(env, "get", "wfs", "-n", namespace, "-l", f"converged.dev/run={run_id}", "-o", "json")
    return list(json.loads(out)["items"])


def parse_minutes(limit: str) -> int | None:
    """sinfo's time limit ("1-00:00:00", "12:00:00", "30:00", "infinite") in minutes."""
    if limit in ("infinite", "UNLIMITED", "n/a"):
        return None
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, _ = parts
    return int(days or 0) * 1440 + hours * 60 + minutes


def partition_status_from_sinfo() -> list[dict[str, Any]]:
    out = subprocess.run(
        ["sinfo", "-h", "-o", "%P|%a|%l|%D|%C|%G|%m"], capture_output=True, text=True, check=True
    ).stdout
    pending = subprocess.run(
        ["squeue", "-h", "-t", "PD", "-o", "%P"], capture_output=True, text=True, check=True
    ).stdout.split()
    partitions = []
    for line in out.splitlines():
        name, avail, limit, nodes, cpus, gres, mem = line.split("|")
        name = name.rstrip("*")
        allocated, idle, _, total = (int(x) for x in cpus.split("/"))
        gpus: dict[str, int] = {}
        for item in gres.split(","):
            fields = item.split(":")
            if fields[0] == "gpu" and len(fields) == 3:
                gpus[fields[1]] = int(fields[2].split("(")[0]) * int(nodes)
        entry: dict[str, Any] = {
            "name": name,
            "state": "UP" if avail == "up" else "DOWN",
            "total": {"nodes": int(nodes), "cpus": total, "memoryMiB": int(mem) * int(nodes), "gpus": gpus},
            "idle": {"cpus": idle, "gpus": gpus if allocated == 0 else {}},
            "pendingJobs": pending.count(name),
        }
        minutes = parse_minutes(limit)
        if minutes:
            entry["maxTimeMinutes"] = minutes
        partitions.append(entry)
    return partitions


def apply_plugin_cluster(env: dict[str, str]) -> str:
    """SlurmCluster `converged-plugin` (restd; steps run in the step image's SIF through Apptainer, the
    shared directory and the Slurm client bound) with its status from sinfo."""
    manifest = slurm_cluster(PLUGIN_CLUSTER, env, runtime=env["CONVERGED_SLURM_CONTAINER_RUNTIME"])
    manifest["spec"]["bindPaths"] = env["CONVERGED_SLURM_BIND_PATHS"].split(",")
    kubectl(
        env,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=converged-tests",
        "-f",
        "-",
        input=json.dumps(manifest),
    )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # this fixture is the cluster's mirror: it writes the whole status, its conditions too (a daemon that
    # once mirrored the cluster may have left Reachable False, and the router avoids such a cluster)
    status = {
        "status": {
            "partitions": partition_status_from_sinfo(),
            "lastSyncTime": now,
            "conditions": [
                {
                    "type": kind,
                    "status": "True",
                    "reason": "MirroredByTests",
                    "message": "status written by the plugin tests from sinfo",
                    "lastTransitionTime": now,
                }
                for kind in ("Reachable", "Synced")
            ],
        }
    }
    kubectl(
        env,
        "patch",
        "slurmcluster",
        PLUGIN_CLUSTER,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    return PLUGIN_CLUSTER


def user_kubeconfig(env: dict[str, str], user: str, directory: Path) -> Path:
    """A copy of the admin kubeconfig readable by `user` only (the user's own credentials, in a test)."""
    path = directory / f"kubeconfig-{user}"
    shutil.copyfile(env["KUBECONFIG"], path)
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    path.chmod(0o600)
    return path


def snakemake_as(user: str, workdir: Path, kubeconfig: Path, *args: str, env: dict[str, str]) -> list[str]:
    """argv running snakemake as `user` in `workdir` (runuser keeps the given environment)."""
    return [
        "runuser",
        "-u",
        user,
        "--",
        "env",
        f"HOME={workdir}",
        f"KUBECONFIG={kubeconfig}",
        SNAKEMAKE,
        *args,
    ]
