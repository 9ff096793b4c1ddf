"""Run the hybrid example on the local converged cluster: `make up` calls this after `cluster up`.

What it does, as a site admin and then a workflow author would:
1. Site set-up (idempotent, server-side apply): namespace `hybrid`, whose steps run as the Slurm user
   alice; Secrets with Slurm JWTs (minted with `scontrol token`, never printed); SlurmCluster `hybrid`
   (slurmrestd, steps in the step image through charliecloud, the shared directory bound); a LocalQueue
   `real` in `hybrid` on Kueue's ClusterQueue `real` (the real kubelet node).
2. Starts `converged-daemon` for the run: it mirrors Slurm's capacity into the SlurmCluster's status
   (what the router reads) and hosts the controller that drives the steps on both backends.
3. Prints the plan (`--converged-plan`), then runs the workflow with `snakemake --executor converged`
   in a fresh directory on the shared filesystem.
4. Stops the daemon and removes what it mirrored for SlurmCluster `hybrid` (virtual Nodes, flavors, the
   ClusterQueue: they would go NotReady without it; a real site keeps its daemon running), then shows
   `kubectl get workflowsteps` for the run and the combined output.

Usage: .venv/bin/python examples/hybrid/run.py [--jobs 8] [--run-id sm-hybrid-1]
Exit status: snakemake's (0 when every step succeeded).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NAMESPACE = "hybrid"
SLURM_USER = "alice"
CLUSTER = "hybrid"
QUEUE = "real"  # LocalQueue in NAMESPACE, on the ClusterQueue of the real node
SYSTEM_NS = "converged-system"
LEASE = "converged-example-hybrid"
BIN = Path(sys.executable).parent


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def cluster_env() -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "deploy/local/cluster"), "env", "--json"], capture_output=True, text=True, check=True
    )
    env = {**os.environ, **json.loads(out.stdout)}
    env.pop("SLURM_JWT", None)  # root's token: the daemon reads the tokens it needs from Secrets
    return env


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    cp = subprocess.run(
        [f"{env['CONVERGED_LOCAL_BIN']}/kubectl", *args], input=stdin, capture_output=True, text=True, env=env
    )
    if cp.returncode != 0:
        raise SystemExit(f"kubectl {args[0]} failed: {cp.stderr.strip()}")
    return cp.stdout


def apply(env: dict[str, str], *objects: dict[str, Any]) -> None:
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    kubectl(
        env,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=converged-example",
        "-f",
        "-",
        stdin=doc,
    )


def mint_token(user: str) -> str:
    """A Slurm JWT for `user`, for a day (root may mint them for anyone)."""
    out = subprocess.run(
        ["scontrol", "token", f"username={user}", "lifespan=86400"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().split("=", 1)[1]


def token_ref(user: str) -> dict[str, str]:
    return {"namespace": SYSTEM_NS, "name": f"slurm-token-{user}", "key": "token"}


def site_objects(env: dict[str, str]) -> list[dict[str, Any]]:
    """Everything but the Secrets: namespace, SlurmCluster, LocalQueue."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "converged.dev/v1alpha1",
            "kind": "SlurmCluster",
            "metadata": {"name": CLUSTER},
            "spec": {
                "transport": "restd",
                "restd": {"url": env["SLURMRESTD_URL"], "user": "root", "tokenSecretRef": token_ref("root")},
                "userMapping": [
                    {"namespace": NAMESPACE, "user": SLURM_USER, "tokenSecretRef": token_ref(SLURM_USER)}
                ],
                "containerRuntime": env["CONVERGED_SLURM_CONTAINER_RUNTIME"],
                "bindPaths": [env["CONVERGED_SHARED_DIR"]],
                "defaults": {"account": "default"},
            },
        },
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": QUEUE, "namespace": NAMESPACE},
            "spec": {"clusterQueue": QUEUE},
        },
    ]


def set_up_site(env: dict[str, str]) -> None:
    say(f"site: namespace {NAMESPACE} (Slurm user {SLURM_USER}), SlurmCluster {CLUSTER}, LocalQueue {QUEUE}")
    apply(env, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NS}})
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": f"slurm-token-{user}", "namespace": SYSTEM_NS},
            "stringData": {"token": mint_token(user)},
        }
        for user in ("root", SLURM_USER)
    ]
    apply(env, *secrets)
    apply(env, *site_objects(env))


@contextlib.contextmanager
def running_daemon(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """converged-daemon for this cluster and namespace: mirror loop plus the hosted controller."""
    say(f"converged-daemon: mirrors SlurmCluster {CLUSTER}, drives namespace {NAMESPACE} (log {log})")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "converged-daemon"),
                f"--identity=example-{os.getpid()}",
                "--health-address=127.0.0.1",
                "--health-port=0",
                f"--clusters={CLUSTER}",
                "--interval=5",
                f"--lease-namespace={SYSTEM_NS}",
                f"--lease-name={LEASE}",
                f"--controller-namespace={NAMESPACE}",
                "--controller-poll-interval=1",
                f"--controller-local-queue={QUEUE}",
                f"--controller-shared-paths={env['CONVERGED_SHARED_DIR']}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)  # releases the Lease, stops the controller
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_for_capacity(env: dict[str, str], daemon: subprocess.Popen[bytes], log: Path, since: float) -> None:
    """Until the daemon has written the partitions into the SlurmCluster's status."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"converged-daemon exited ({daemon.returncode}):\n{log.read_text()[-3000:]}")
        status = json.loads(kubectl(env, "get", "slurmcluster", CLUSTER, "-o", "json")).get("status") or {}
        partitions = status.get("partitions") or []
        if partitions and _synced_after(status.get("lastSyncTime"), since):
            names = ", ".join(f"{p['name']} ({p.get('state', '?')})" for p in partitions)
            print(f"   Slurm capacity mirrored: partitions {names}", flush=True)
            return
        time.sleep(1)
    raise SystemExit(f"the daemon did not mirror Slurm within 120 s:\n{log.read_text()[-3000:]}")


def _synced_after(stamp: str | None, since: float) -> bool:
    """Whether the status was written after `since` (by this daemon, not left over from an earlier one)."""
    if not stamp:
        return False
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() >= since - 1


def new_run_dir(env: dict[str, str]) -> Path:
    """A fresh directory on the shared filesystem, open to the step user (Slurm steps run as alice)."""
    base = Path(env["CONVERGED_SHARED_DIR"]) / "examples" / "hybrid"
    run = base / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run.mkdir(parents=True)
    for d in (base.parent, base, run):
        d.chmod(0o1777)
    shutil.copy(HERE / "Snakefile", run / "Snakefile")
    return run


def snakemake_args(env: dict[str, str], run_id: str, jobs: int) -> list[str]:
    return [
        str(BIN / "snakemake"),
        "--executor=converged",
        f"--converged-namespace={NAMESPACE}",
        f"--converged-slurm-cluster={CLUSTER}",
        f"--converged-local-queue={QUEUE}",
        f"--converged-image={env['CONVERGED_STEP_IMAGE']}",  # containerd's name, for Kubernetes pods
        f"--converged-slurm-image={env['CONVERGED_STEP_IMAGE_DIR']}",  # the same image for charliecloud
        f"--converged-run-id={run_id}",
        "--converged-poll-interval=1",
        f"--jobs={jobs}",
        "--printshellcmds",
    ]


def run_snakemake(args: list[str], workdir: Path, env: dict[str, str]) -> int:
    # umask 0: the steps run as other users (alice on Slurm, the pod's user) and write into the
    # .snakemake directory this process creates
    return subprocess.run(args, cwd=workdir, env=env, preexec_fn=lambda: os.umask(0), check=False).returncode


def show_steps(env: dict[str, str], run_id: str) -> None:
    say(f"kubectl get workflowsteps -n {NAMESPACE} -l converged.dev/run={run_id} -o wide")
    print(
        kubectl(
            env, "get", "workflowsteps", "-n", NAMESPACE, "-l", f"converged.dev/run={run_id}", "-o", "wide"
        )
    )


def remove_mirrored(env: dict[str, str]) -> None:
    """The daemon's objects for the example's SlurmCluster, once the daemon that kept them is gone."""
    selector = f"converged.dev/slurm-cluster={CLUSTER}"
    say(f"daemon stopped: removing the Nodes, ResourceFlavors and ClusterQueue mirrored for {CLUSTER}")
    kubectl(env, "delete", "nodes,resourceflavors,clusterqueues", "-l", selector, "--ignore-not-found")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=8, help="snakemake --jobs")
    parser.add_argument(
        "--run-id", default=f"sm-hybrid-{uuid.uuid4().hex[:6]}", help="label of the run's steps"
    )
    args = parser.parse_args()
    env = cluster_env()
    env["PATH"] = f"{BIN}:{env['CONVERGED_LOCAL_BIN']}:{env.get('PATH', '')}"
    set_up_site(env)
    workdir = new_run_dir(env)
    run_id = args.run_id
    log = workdir / "converged-daemon.log"
    started = time.time()
    with running_daemon(env, log) as daemon:
        wait_for_capacity(env, daemon, log, started)
        say(f"the plan (snakemake --executor converged --converged-plan), in {workdir}")
        argv = snakemake_args(env, run_id, args.jobs)
        if run_snakemake([*argv, "--converged-plan"], workdir, env) != 0:
            return 1
        say("the run (snakemake --executor converged)")
        rc = run_snakemake(argv, workdir, env)
    remove_mirrored(env)
    show_steps(env, run_id)
    if rc == 0:
        say(f"{workdir}/report.txt")
        print((workdir / "report.txt").read_text(), end="")
    else:
        print(f"snakemake failed ({rc}); the daemon's log: {log}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
