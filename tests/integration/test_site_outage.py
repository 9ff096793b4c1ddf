"""One Slurm cluster of the site goes down mid-workflow: the rest of the workflow goes on, the steps that
can only run there say so and wait, and the run completes once the cluster is back.

hpc2's slurmctld is stopped for real (its slurmrestd then answers nothing, as at a site whose controller
is being restarted); the site daemon and its controller, alice's snakemake and hpc1 run as in test_site.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from localcluster import hpc2, procs
from localcluster.layout import Layout
from tests.integration.conftest import eventually, kubectl
from tests.integration.test_site import USER, as_user, sacct

pytestmark = pytest.mark.integration

SNAKEFILE = """
rule all:
    input: "big.txt", "small.txt"

rule big:  # 64 GB: only hpc2's bigmem node has it
    output: "big.txt"
    resources: mem_mb=64000, runtime=10
    shell: "echo big on $SLURM_CLUSTER_NAME $SLURMD_NODENAME > {output}"

rule small:
    output: "small.txt"
    resources: runtime=10
    shell: "echo small > {output}"
"""


def hpc2_condition(env: dict[str, str], kind: str) -> str | None:
    obj = json.loads(kubectl(env, "get", "slurmcluster", "hpc2", "-o", "json"))
    return next((c["status"] for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def steps_by_rule(env: dict[str, str], run_id: str) -> dict[str, dict[str, Any]]:
    out = kubectl(env, "get", "wfs", "-n", USER, "-l", f"converged.dev/run={run_id}", "-o", "json")
    return {o["spec"]["workflow"]["rule"]: o for o in json.loads(out)["items"]}


def test_a_workflow_outlives_an_outage_of_one_slurm_cluster(cluster_env: dict[str, str]) -> None:
    env = cluster_env
    layout = Layout.default()
    workdir = Path(env["CONVERGED_SHARED_DIR"]) / "users" / USER / f"outage-{uuid.uuid4().hex[:8]}"
    as_user(USER, f"mkdir {shlex.quote(str(workdir))}")
    as_user(USER, f"cat > {shlex.quote(str(workdir / 'Snakefile'))} <<'EOF'\n{SNAKEFILE}\nEOF")
    run_id = f"sm-outage-{uuid.uuid4().hex[:6]}"
    run: subprocess.Popen[str] | None = None
    try:
        procs.stop(layout, "hpc2-slurmctld")
        eventually("hpc2 Reachable False", lambda: hpc2_condition(env, "Reachable") == "False", timeout=120)
        run = subprocess.Popen(
            [
                "runuser",
                "-l",
                USER,
                "-c",
                f"cd {shlex.quote(str(workdir))} && "
                f"snakemake --executor converged -j 4 --converged-run-id={run_id}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def small_done_big_waiting() -> bool:
            steps = steps_by_rule(env, run_id)
            big, small = steps.get("big", {}).get("status", {}), steps.get("small", {}).get("status", {})
            return bool(small.get("phase") == "Succeeded") and big.get("reason") == "ClusterUnreachable"

        eventually("small done while big waits for hpc2", small_done_big_waiting, timeout=240)
        steps = steps_by_rule(env, run_id)
        big = steps["big"]
        assert (big["spec"]["backend"], big["spec"]["slurm"]["cluster"]) == ("slurm", "hpc2")
        assert big["spec"]["route"]["decision"] == "Unverified"
        assert "unreachable" in big["spec"]["route"]["reason"], big["spec"]["route"]
        assert big["status"]["phase"] == "Pending" and "backendRef" not in big["status"]
        assert big["status"]["message"].startswith("Slurm cluster hpc2 unreachable since ")
        assert big["status"]["message"].endswith("it is submitted when it answers")
        assert run.poll() is None  # the workflow waits for it
    except BaseException:
        if run is not None:  # alice's snakemake would wait for ever: stop it, and its steps with it
            run.terminate()
            run.wait(timeout=60)
        raise
    finally:
        hpc2.up(layout)  # idempotent: starts what is stopped
    assert run is not None
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output[-5000:]
    big = steps_by_rule(env, run_id)["big"]
    assert big["status"]["phase"] == "Succeeded", big["status"]
    job_id = str(big["status"]["backendRef"]["jobId"])
    user, partition, state, nodes = sacct([job_id], env)[job_id]
    assert (user, partition, state, nodes) == (USER, "bigmem", "COMPLETED", "h2big")
    assert (workdir / "big.txt").read_text().split() == ["big", "on", "hpc2", "h2big"]
    assert eventually("hpc2 Reachable again", lambda: hpc2_condition(env, "Reachable") == "True", timeout=120)
