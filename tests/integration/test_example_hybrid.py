"""Issue 7 acceptance 2: the hybrid example (examples/hybrid), exactly as `make up` runs it.

examples/hybrid/run.py sets up namespace `hybrid` (Slurm user alice), SlurmCluster `hybrid` and
LocalQueue `hybrid/real`, starts `converged-daemon` (capacity mirror + hosted controller), prints the
plan and runs the Snakefile with `snakemake --executor converged`: three steps on the cpu partition, a
GPU step on the gpu partition, a Kubernetes Job through Kueue on the real node, and a final step that
combines their outputs. Checked here: the outputs, where each step ran (by Slurm's accounting and by
the WorkflowSteps), the table `kubectl get wfs` prints, and that no token leaked into any output.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, kubectl

pytestmark = pytest.mark.integration

NS = "hybrid"


def steps_of(env: dict[str, str], run_id: str) -> dict[str, dict[str, Any]]:
    """The run's WorkflowSteps by rule and sample ("prepare/alpha", "train", ...)."""
    out = kubectl(env, "get", "wfs", "-n", NS, "-l", f"converged.dev/run={run_id}", "-o", "json")
    steps = {}
    for obj in json.loads(out)["items"]:
        job = obj["spec"]["workflow"]
        steps["/".join([job["rule"], *job.get("wildcards", {}).values()])] = obj
    return steps


def sacct(job_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """job id -> (user, partition, state) from Slurm's accounting."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,User,Partition,State", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {f[0]: (f[1], f[2], f[3]) for f in (line.split("|") for line in out.splitlines())}


def test_hybrid_example_runs_each_step_where_it_fits(converged_crds: dict[str, str]) -> None:
    env = converged_crds
    run_id = f"sm-hybrid-{uuid.uuid4().hex[:6]}"
    cp = subprocess.run(
        [sys.executable, str(ROOT / "examples/hybrid/run.py"), f"--run-id={run_id}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = cp.stdout + cp.stderr
    assert cp.returncode == 0, output[-5000:]

    # the plan came first, with every job, its backend, target and reason
    plan = output[output.index(f"converged plan for run {run_id} in namespace {NS}: 6 jobs") :]
    assert "train      -             slurm    hybrid/gpu   OnlyFeasible" in plan, plan[:3000]
    assert "not slurm hybrid/cpu: no a100 GPUs" in plan

    steps = steps_of(env, run_id)
    assert len(steps) == 6, sorted(steps)
    assert all(s["status"]["phase"] == "Succeeded" and s["status"]["exitCode"] == 0 for s in steps.values())
    backends = {key: s["spec"]["backend"] for key, s in steps.items()}
    assert backends == {
        "prepare/alpha": "slurm",
        "prepare/beta": "slurm",
        "prepare/gamma": "slurm",
        "train": "slurm",
        "summarize": "kueue",
        "report": backends["report"],  # wherever the router found the shortest wait
    }
    workdir = Path(next(iter(steps.values()))["spec"]["workingDir"])

    # where the Slurm steps ran, by Slurm's own accounting: as alice, on the partitions the plan said
    slurm_steps = {k: s for k, s in steps.items() if s["spec"]["backend"] == "slurm"}
    ids = {k: str(s["status"]["backendRef"]["jobId"]) for k, s in slurm_steps.items()}
    accounted = sacct(list(ids.values()))
    for key, job_id in ids.items():
        user, partition, state = accounted[job_id]
        expected = "gpu" if key.startswith("train") else slurm_steps[key]["spec"]["slurm"]["partition"]
        assert (user, partition, state) == ("alice", expected, "COMPLETED"), (key, accounted[job_id])

    # the Kueue step ran as a Job admitted by Kueue, on the real node
    name = steps["summarize"]["status"]["backendRef"]["name"]
    job = json.loads(kubectl(env, "get", "job", "-n", NS, name, "-o", "json"))
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "real"
    assert job["status"].get("succeeded") == 1

    # the final step combined every output
    report = (workdir / "report.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in report] == [
        "prepare alpha",
        "prepare beta",
        "prepare gamma",
        "train",
        "summarize",
    ], report
    assert all("partition cpu" in line and "user alice" in line for line in report[:3]), report
    assert "partition gpu GPUs 0" in report[3] and "Kubernetes pod" in report[4], report

    # kubectl get wfs: every step with its backend, job and phase
    table = kubectl(env, "get", "wfs", "-n", NS, "-l", f"converged.dev/run={run_id}").splitlines()
    assert table[0].split()[:5] == ["NAME", "RULE", "BACKEND", "PHASE", "JOB"]
    rows = {row.split()[0]: tuple(row.split()[2:4]) for row in table[1:]}
    assert rows == {s["metadata"]["name"]: (s["spec"]["backend"], "Succeeded") for s in steps.values()}
    assert f"kubectl get workflowsteps -n {NS} -l converged.dev/run={run_id}" in output

    # the daemon stopped and released its Lease; no Slurm token anywhere in what the run printed
    lease = json.loads(
        kubectl(env, "get", "lease", "-n", "converged-system", "converged-example-hybrid", "-o", "json")
    )
    assert not lease["spec"].get("holderIdentity"), lease["spec"]
    # ... and what it mirrored for the example's SlurmCluster went with it (no NotReady Nodes left)
    mirrored = "nodes,resourceflavors,clusterqueues"
    assert kubectl(env, "get", mirrored, "-l", "converged.dev/slurm-cluster=hybrid", "-o", "name") == ""
    daemon_log = (workdir / "converged-daemon.log").read_text()
    secrets = json.loads(kubectl(env, "get", "secrets", "-n", "converged-system", "-o", "json"))["items"]
    tokens = [s["data"]["token"] for s in secrets if s["metadata"]["name"].startswith("slurm-token-")]
    for token in (base64.b64decode(t).decode() for t in tokens):
        assert token not in output and token not in daemon_log
