"""The local cluster as a site (issue 14): the daemon deployed from its image, users with their own
least-privilege identities, and the examples run by a user exactly as `make up` runs them, with no
converged flags.

`cluster up` set the site up (deploy/local/localcluster/site.py): the Deployment converged-daemon
(two replicas of localhost/converged/daemon:local), SlurmCluster hpc1, users alice and bob with a
namespace, a kubeconfig and a directory on the shared filesystem each. These tests use that site as
it is; they create nothing but workflow runs.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, SYSTEM_NS, eventually, kubectl

pytestmark = pytest.mark.integration

USER = "alice"
CLUSTER = "hpc1"
DEPLOYMENT = "converged-daemon"


def as_user(user: str, command: str, cwd: str = "~") -> subprocess.CompletedProcess[str]:
    """`command` in a login shell of `user`: their PATH and their kubeconfig, nothing of ours."""
    return subprocess.run(
        ["runuser", "-l", user, "-c", f"cd {cwd} && {command}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def run_example(name: str) -> tuple[subprocess.CompletedProcess[str], str]:
    cp = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name / "run.py"), f"--user={USER}"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    return cp, cp.stdout + cp.stderr


def run_ids(output: str) -> list[str]:
    return re.findall(r"kubectl get workflowsteps -l converged\.dev/run=(\S+)", output)


def steps_of(env: dict[str, str], run_id: str) -> dict[str, dict[str, Any]]:
    """The run's WorkflowSteps by rule and wildcards ("prepare/alpha", "train", ...)."""
    out = kubectl(env, "get", "wfs", "-n", USER, "-l", f"converged.dev/run={run_id}", "-o", "json")
    steps = {}
    for obj in json.loads(out)["items"]:
        job = obj["spec"]["workflow"]
        steps["/".join([job["rule"], *job.get("wildcards", {}).values()])] = obj
    return steps


def sacct(job_ids: list[str], env: dict[str, str] | None = None) -> dict[str, tuple[str, str, str, str]]:
    """job id -> (user, partition, state, nodes) from Slurm's accounting: hpc1's (the host's Slurm), or
    hpc2's through `cluster hpc2-exec` when its environment is given."""
    argv = ["sacct", "-n", "-X", "-P", "-o", "JobID,User,Partition,State,NodeList", "-j", ",".join(job_ids)]
    if env is not None:
        argv = [*shlex.split(env["CONVERGED_HPC2_EXEC"]), "--", *argv]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return {f[0]: (f[1], f[2], f[3], f[4]) for f in (line.split("|") for line in out.splitlines())}


def created(obj: dict[str, Any]) -> float:
    stamp = obj["metadata"]["creationTimestamp"]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def leader(env: dict[str, str]) -> str:
    lease = json.loads(kubectl(env, "get", "lease", "-n", SYSTEM_NS, DEPLOYMENT, "-o", "json"))
    return str(lease["spec"].get("holderIdentity") or "")


def daemon_pods(env: dict[str, str]) -> list[dict[str, Any]]:
    out = kubectl(
        env, "get", "pods", "-n", SYSTEM_NS, "-l", "app.kubernetes.io/name=converged-daemon", "-o", "json"
    )
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def ready_pods(env: dict[str, str]) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in daemon_pods(env)
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]


def slurm_tokens(env: dict[str, str]) -> list[str]:
    secrets = json.loads(kubectl(env, "get", "secrets", "-n", SYSTEM_NS, "-o", "json"))["items"]
    return [
        base64.b64decode(s["data"]["token"]).decode()
        for s in secrets
        if s["metadata"]["name"].startswith("slurm-") and "-token-" in s["metadata"]["name"]  # hpc1 and hpc2
    ]


def test_the_daemon_runs_as_a_deployment_of_its_image_and_mirrors_the_site(
    cluster_env: dict[str, str],
) -> None:
    env = cluster_env
    deployment = json.loads(kubectl(env, "get", "deployment", "-n", SYSTEM_NS, DEPLOYMENT, "-o", "json"))
    assert deployment["status"].get("readyReplicas") == 2, deployment["status"]
    pod_spec = deployment["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    assert container["image"] == "localhost/converged/daemon:local"
    pods = daemon_pods(env)
    assert len(pods) == 2
    # the image's own user (the Containerfile's USER 10001), read-only root filesystem, and one leader
    for pod in pods:
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] and status["imageID"], status
    assert leader(env) in {p["metadata"]["name"] for p in pods}
    uid = kubectl(env, "exec", "-n", SYSTEM_NS, pods[0]["metadata"]["name"], "--", "id", "-u").strip()
    assert uid == "10001"

    # what it mirrors of hpc1: a Ready virtual Node per partition with Slurm's CPUs, and Kueue's objects
    nodes = json.loads(
        kubectl(env, "get", "nodes", "-l", f"converged.dev/slurm-cluster={CLUSTER}", "-o", "json")
    )
    by_name = {n["metadata"]["name"]: n for n in nodes["items"]}
    assert set(by_name) == {f"slurm-{CLUSTER}-cpu", f"slurm-{CLUSTER}-gpu"}, sorted(by_name)
    for node in by_name.values():
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["status"]["conditions"]
        assert int(node["status"]["capacity"]["cpu"]) > 0
    assert kubectl(env, "get", "clusterqueue", f"slurm-{CLUSTER}", "-o", "name").strip()
    assert (
        len(
            kubectl(
                env, "get", "resourceflavors", "-l", f"converged.dev/slurm-cluster={CLUSTER}", "-o", "name"
            ).split()
        )
        == 2
    )
    slurm_cluster = json.loads(kubectl(env, "get", "slurmcluster", CLUSTER, "-o", "json"))
    conditions = {c["type"]: c["status"] for c in slurm_cluster["status"]["conditions"]}
    assert conditions == {"Reachable": "True", "Synced": "True"}, slurm_cluster["status"]


def test_a_user_holds_only_what_a_workflow_needs(cluster_env: dict[str, str]) -> None:
    def can(verb_resource: str) -> bool:
        cp = as_user(USER, f"kubectl auth can-i {verb_resource}")
        assert cp.stdout.strip() in {"yes", "no"}, cp.stdout + cp.stderr
        return cp.stdout.strip() == "yes"

    allowed = [
        "create workflowsteps.converged.dev",  # in her kubeconfig's namespace
        "deletecollection workflowsteps.converged.dev",
        "list localqueues.kueue.x-k8s.io",
        "get configmaps/converged-site",
        "get pods --subresource=log",
        "list slurmclusters.converged.dev",
        "list clusterqueues.kueue.x-k8s.io",
    ]
    refused = [
        "create jobs.batch",  # only through WorkflowSteps: the controller creates the Job
        "create mpijobs.kubeflow.org",
        "get secrets",
        "get secrets -n converged-system",  # the Slurm tokens
        "create workflowsteps.converged.dev -n bob",  # another user's namespace
        "patch workflowsteps.converged.dev --subresource=status",  # status is the controller's
        "get configmaps/other",
        "patch slurmclusters.converged.dev",
        "delete nodes",
    ]
    assert [r for r in allowed if not can(r)] == []
    assert [r for r in refused if can(r)] == []


def test_hybrid_example_runs_as_alice_with_no_flags(cluster_env: dict[str, str]) -> None:
    """Issue 7's acceptance, now as a user: the site's defaults fill every setting, the deployed
    controller drives the steps, each runs as alice."""
    env = cluster_env
    cp, output = run_example("hybrid")
    assert cp.returncode == 0, output[-5000:]
    (run_id,) = run_ids(output)

    # the plan came first, with every job, its backend, target and reason
    plan = output[output.index("converged plan for run") : output.index("snakemake --executor converged -j")]
    assert f"in namespace {USER}: 7 jobs" in plan, plan[:2000]
    assert re.search(rf"train\s+-\s+slurm\s+{CLUSTER}/gpu\s", plan), plan[:3000]  # the only a100 GPUs
    assert re.search(r"assemble\s+-\s+slurm\s+hpc2/bigmem\s", plan), plan[:3000]  # the only 64 GB node

    steps = steps_of(env, run_id)
    assert len(steps) == 7, sorted(steps)
    assert all(s["status"]["phase"] == "Succeeded" and s["status"]["exitCode"] == 0 for s in steps.values())
    assert {k: s["spec"]["backend"] for k, s in steps.items() if k != "report"} == {
        "prepare/alpha": "slurm",
        "prepare/beta": "slurm",
        "prepare/gamma": "slurm",
        "train": "slurm",
        "assemble": "slurm",
        "summarize": "kueue",
    }
    # no flags: the images, queue and shared path are the site's (ConfigMap converged-site)
    site = json.loads(kubectl(env, "get", "configmap", "-n", USER, "converged-site", "-o", "json"))["data"]
    images = {s["spec"]["backend"]: s["spec"]["image"] for s in steps.values()}
    assert images == {"slurm": site["slurmImage"], "kueue": site["image"]}
    assert steps["summarize"]["spec"]["kueue"]["localQueue"] == site["localQueue"]

    # each cluster's own accounting: as alice, on the cluster and partition the plan said (a cpu step
    # may go to either cluster's cpu partition: both have one)
    slurm_steps = {k: s for k, s in steps.items() if s["spec"]["backend"] == "slurm"}
    where = {
        k: (s["status"]["backendRef"]["cluster"], str(s["status"]["backendRef"]["jobId"]))
        for k, s in slurm_steps.items()
    }
    assert where["train"][0] == CLUSTER and where["assemble"][0] == "hpc2"
    accounted = {
        cluster: sacct([j for c, j in where.values() if c == cluster], env if cluster == "hpc2" else None)
        for cluster in {c for c, _ in where.values()}
    }
    for key, (cluster, job_id) in where.items():
        user, partition, state, _ = accounted[cluster][job_id]
        expected = {
            "train": "gpu",
            "assemble": "bigmem",
            "report": slurm_steps[key]["spec"]["slurm"].get("partition"),
        }
        assert (user, partition, state) == (USER, expected.get(key, "cpu"), "COMPLETED"), (
            key,
            cluster,
            job_id,
        )

    # every output is alice's, whichever backend wrote it (her Kubernetes pods run as her uid)
    workdir = Path(next(iter(steps.values()))["spec"]["workingDir"])
    alice_uid = int(subprocess.run(["id", "-u", USER], capture_output=True, text=True, check=True).stdout)
    for output_file in ["prepared/alpha.txt", "model.txt", "assembly.txt", "summary.txt", "report.txt"]:
        assert (workdir / output_file).stat().st_uid == alice_uid, output_file
    report = (workdir / "report.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in report] == [
        "prepare alpha",
        "prepare beta",
        "prepare gamma",
        "train",
        "assemble",
        "summarize",
    ]
    assert all("partition cpu" in line and f"user {USER}" in line for line in report[:3]), report
    assert "partition gpu GPUs 0" in report[3] and "Kubernetes pod" in report[5], report
    assert "cluster hpc2" in report[4] and "partition bigmem node h2big" in report[4], report

    # the user's own `kubectl get wfs`, and no Slurm token in anything the run printed
    assert f"kubectl get workflowsteps -l converged.dev/run={run_id}" in output
    assert re.search(rf"{run_id}-summarize-\d+\s+summarize\s+kueue\s+Succeeded\s+Job/", output), output[
        -3000:
    ]
    for token in slurm_tokens(env):
        assert token not in output


def test_mpi_example_runs_lammps_as_an_mpijob_and_on_two_slurm_nodes(cluster_env: dict[str, str]) -> None:
    env = cluster_env
    cp, output = run_example("mpi")
    assert cp.returncode == 0, output[-5000:]
    assert "LAMMPS MPI tasks: kueue 2, slurm 2" in output
    kueue_run, slurm_run = run_ids(output)
    kueue_step = steps_of(env, kueue_run)["lammps"]
    assert kueue_step["status"]["backendRef"]["kind"] == "MPIJob", kueue_step["status"]
    slurm_step = steps_of(env, slurm_run)["lammps"]
    user, _, state, nodes = sacct([str(slurm_step["status"]["backendRef"]["jobId"])]).popitem()[1]
    assert (user, state, nodes) == (USER, "COMPLETED", "c[1-2]")


def test_preflight_stops_a_run_off_the_shared_filesystem_before_submitting(
    cluster_env: dict[str, str],
) -> None:
    env = cluster_env
    workdir = Path("/tmp") / f"converged-preflight-{uuid.uuid4().hex[:8]}"
    as_user(USER, f"mkdir {workdir} && cp {shlex.quote(str(ROOT / 'examples/hybrid/Snakefile'))} {workdir}/")
    before = len(json.loads(kubectl(env, "get", "wfs", "-n", USER, "-o", "json"))["items"])
    cp = as_user(USER, "snakemake --executor converged -j 4", cwd=str(workdir))
    output = cp.stdout + cp.stderr
    assert cp.returncode != 0
    assert f"the workflow directory {workdir} is not on the shared filesystem" in output, output[-3000:]
    assert "Run snakemake from a directory under it" in output
    after = len(json.loads(kubectl(env, "get", "wfs", "-n", USER, "-o", "json"))["items"])
    assert after == before  # nothing was submitted
    subprocess.run(["rm", "-rf", str(workdir)], check=True)


def test_preflight_stops_grouped_allocations_the_sites_controller_could_not_hand_over(
    cluster_env: dict[str, str],
) -> None:
    """The deployed daemon (uid 10001) cannot write alice's 0755 directory, where grouped steps are
    handed to their allocations: said before anything is submitted, with what to do instead."""
    env = cluster_env
    base = Path(env["CONVERGED_SHARED_DIR"]) / "users" / USER
    workdir = base / f"grouped-{uuid.uuid4().hex[:8]}"
    as_user(USER, f"mkdir {workdir} && cp {shlex.quote(str(ROOT / 'examples/chains/Snakefile'))} {workdir}/")

    def count(kind: str) -> int:
        return len(json.loads(kubectl(env, "get", kind, "-n", USER, "-o", "json"))["items"])

    before = count("workflowsteps"), count("stepallocations")
    cp = as_user(USER, "snakemake --executor converged --converged-group-allocations -j 4", cwd=str(workdir))
    output = cp.stdout + cp.stderr
    assert cp.returncode != 0
    assert "--converged-group-allocations: the site's controller (uid 10001) cannot write" in output, output[
        -3000:
    ]
    assert "Run without --converged-group-allocations" in output
    assert (count("workflowsteps"), count("stepallocations")) == before  # nothing was submitted


def test_a_running_workflow_survives_the_leader_pod_being_deleted(cluster_env: dict[str, str]) -> None:
    env = cluster_env
    first = leader(env)
    assert first, "no daemon holds the lease"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples/hybrid/run.py"), f"--user={USER}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started = time.time()

    def running_steps() -> int:
        items = json.loads(kubectl(env, "get", "wfs", "-n", USER, "-o", "json"))["items"]
        fresh = [s for s in items if created(s) >= started - 2]
        return sum(1 for s in fresh if (s.get("status") or {}).get("backendRef"))

    try:
        eventually("a step of the new run on a backend", running_steps, timeout=180)
        kubectl(env, "delete", "pod", "-n", SYSTEM_NS, first, "--wait=false")
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-5000:]
    (run_id,) = run_ids(output)
    assert all(s["status"]["phase"] == "Succeeded" for s in steps_of(env, run_id).values())
    second = eventually("a new leader", lambda: (lambda h: h if h and h != first else None)(leader(env)))
    assert second in {p["metadata"]["name"] for p in daemon_pods(env)}
    eventually("the Deployment back at 2 ready pods", lambda: len(ready_pods(env)) == 2, timeout=120)
