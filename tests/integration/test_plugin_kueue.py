"""Issue 7: `snakemake --executor converged` with every step routed to Kueue, end to end.

The steps become batch Jobs in namespace team-a on its LocalQueue `real` (ClusterQueue `real`: the real
kubelet node, 2 CPUs of quota), run in the step image with the shared directory mounted at the same
path by the embedded controller (`--converged-shared-paths`), and write their outputs there. Checked:
outputs written in pods, the WorkflowSteps' Jobs and exit codes, a failing step's exit code, reason and
log tail, and Ctrl-C leaving no Job, no pod and no WorkflowStep of the run behind (Kueue had admitted
two of the three steps and kept one queued).
"""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import eventually, kubectl
from tests.integration.plugin_support import (
    PLUGIN_NS,
    SLEEPERS,
    apply_plugin_cluster,
    apply_plugin_queue,
    interrupt_when,
    new_flow_dir,
    run_snakemake,
    run_steps,
)

pytestmark = pytest.mark.integration

FAN_IN = textwrap.dedent(
    """
    rule all:
        input: "combined.txt"

    rule part:
        output: "parts/{i}.txt"
        resources: mem_mb=100, runtime=5
        shell: "echo part {wildcards.i} pod $(hostname) uid $(id -u) > {output}"

    rule combine:
        input: expand("parts/{i}.txt", i=range(3))
        output: "combined.txt"
        resources: mem_mb=100, runtime=5
        shell: "cat {input} > {output}"
    """
)


@pytest.fixture(scope="module")
def plugin_env(slurm_identities: dict[str, str]) -> dict[str, str]:
    apply_plugin_cluster(slurm_identities)
    apply_plugin_queue(slurm_identities)
    return slurm_identities


@pytest.fixture
def flow_dir(plugin_env: dict[str, str]) -> Path:
    return new_flow_dir(plugin_env, "plugin-kueue")


def kueue_args(env: dict[str, str], run_id: str) -> list[str]:
    return [
        "--executor=converged",
        f"--converged-namespace={PLUGIN_NS}",
        "--converged-default-backend=kueue",
        "--converged-local-queue=real",
        "--converged-controller=embedded",
        f"--converged-shared-paths={env['CONVERGED_SHARED_DIR']}",
        f"--converged-image={env['CONVERGED_STEP_IMAGE']}",
        f"--converged-run-id={run_id}",
        "--converged-poll-interval=1",
        "--jobs=10",
    ]


def jobs_and_pods(env: dict[str, str], names: list[str]) -> list[str]:
    """Jobs and pods in the namespace that belong to these steps (Jobs are named after their step)."""
    out = json.loads(kubectl(env, "get", "jobs,pods", "-n", PLUGIN_NS, "-o", "json"))["items"]
    found = []
    for obj in out:
        owner = obj["metadata"].get("labels", {}).get("job-name") or obj["metadata"]["name"]
        if owner in names:
            found.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return found


def test_steps_run_as_jobs_in_pods_and_write_to_the_shared_directory(
    plugin_env: dict[str, str], flow_dir: Path
) -> None:
    (flow_dir / "Snakefile").write_text(FAN_IN)
    run_id = f"sm-kq-{uuid.uuid4().hex[:6]}"
    cp = run_snakemake(plugin_env, flow_dir, *kueue_args(plugin_env, run_id))
    assert cp.returncode == 0, cp.stderr[-6000:]
    steps = run_steps(plugin_env, run_id)
    assert sorted(s["spec"]["workflow"]["rule"] for s in steps) == ["combine", "part", "part", "part"]
    pods = {}
    for step in steps:
        status = step["status"]
        assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
        assert step["spec"]["backend"] == "kueue" and step["spec"]["kueue"] == {"localQueue": "real"}
        assert status["backendRef"]["display"] == f"Job/{step['metadata']['name']}"
        job = json.loads(
            kubectl(plugin_env, "get", "job", "-n", PLUGIN_NS, step["metadata"]["name"], "-o", "json")
        )
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "real"
        pod_list = kubectl(
            plugin_env,
            "get",
            "pods",
            "-n",
            PLUGIN_NS,
            "-l",
            f"job-name={job['metadata']['name']}",
            "-o",
            "json",
        )
        (pod,) = json.loads(pod_list)["items"]
        assert pod["spec"]["nodeName"] == "real-node-0"
        pods[pod["metadata"]["name"]] = step
    combined = (flow_dir / "combined.txt").read_text().splitlines()
    assert [line.split()[:2] for line in combined] == [["part", "0"], ["part", "1"], ["part", "2"]]
    assert {line.split()[3] for line in combined} <= set(pods), (combined, sorted(pods))
    assert "-> WorkflowStep team-a/" in cp.stderr and "kueue team-a/real" in cp.stderr


def test_failing_step_reports_job_exit_code_and_log_tail(plugin_env: dict[str, str], flow_dir: Path) -> None:
    (flow_dir / "Snakefile").write_text(
        'rule boom:\n    output: "x.txt"\n    resources: mem_mb=100, runtime=5\n'
        '    shell: "echo the real cause >&2; exit 3"\n'
    )
    run_id = f"sm-kqf-{uuid.uuid4().hex[:6]}"
    cp = run_snakemake(plugin_env, flow_dir, *kueue_args(plugin_env, run_id))
    assert cp.returncode != 0
    (step,) = run_steps(plugin_env, run_id)
    status = step["status"]
    assert (status["phase"], status["exitCode"]) == ("Failed", 1), status
    assert f"backend job Job/{step['metadata']['name']}, exit code 1" in cp.stderr
    assert "the real cause" in cp.stderr.split("last lines of the log:", 1)[1]


def test_ctrl_c_leaves_no_job_no_pod_and_no_workflowstep(plugin_env: dict[str, str], flow_dir: Path) -> None:
    (flow_dir / "Snakefile").write_text(SLEEPERS)
    run_id = f"sm-kqc-{uuid.uuid4().hex[:6]}"

    def two_running_one_queued() -> list[str] | None:
        steps = run_steps(plugin_env, run_id)
        phases = sorted(s.get("status", {}).get("phase", "") for s in steps)
        names = [s["metadata"]["name"] for s in steps]
        # Kueue admitted two (2 CPUs of quota) and holds one; 3 Jobs and the 2 admitted ones' pods exist
        return (
            names
            if phases == ["Queued", "Running", "Running"] and len(jobs_and_pods(plugin_env, names)) == 5
            else None
        )

    names, output = interrupt_when(
        plugin_env,
        flow_dir,
        kueue_args(plugin_env, run_id),
        "two steps running, one queued",
        two_running_one_queued,
    )
    assert "its WorkflowSteps and backend jobs are gone" in output, output[-3000:]
    assert "was deleted before it finished" not in output  # a cancel is no failure of each step
    assert run_steps(plugin_env, run_id) == []
    eventually("the run's Jobs and pods gone", lambda: jobs_and_pods(plugin_env, names) == [], timeout=60)
