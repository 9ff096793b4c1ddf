"""Issue 7: `snakemake --executor converged` on the local cluster, every step routed to Slurm.

snakemake runs as the test runner (root: this venv lives under /root, out of the step users' reach),
with umask 0 so the steps can write into the `.snakemake` directory it creates; the steps run as
alice, the Slurm user of namespace team-a, in the step image (SIF) through Apptainer, on the shared
filesystem. The controller runs embedded in the snakemake process. SlurmCluster `converged-plugin`
carries the live partitions in its status (tests/integration/plugin_support.py), so the router places
GPU steps on the gpu partition by itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import kubectl
from tests.integration.plugin_support import (
    SLEEPERS,
    SNAKEMAKE,
    apply_plugin_cluster,
    interrupt_when,
    new_flow_dir,
    run_snakemake,
    run_steps,
)

pytestmark = pytest.mark.integration

NS = "team-a"

HYBRID = textwrap.dedent(
    """
    SAMPLES = ["a", "b"]

    rule all:
        input: "combined.txt"

    rule prep:
        output: "prep/{s}.txt"
        resources: mem_mb=100, runtime=5
        shell: "echo {wildcards.s} $(id -un) $SLURM_JOB_PARTITION $SLURM_JOB_ID > {output}"

    rule train:
        input: expand("prep/{s}.txt", s=SAMPLES)
        output: "train.txt"
        resources: gpu=1, gpu_model="a100", mem_mb=100, runtime=5
        shell: "echo train $(id -un) $SLURM_JOB_PARTITION gpus=$CUDA_VISIBLE_DEVICES > {output}"

    rule combine:
        input: "train.txt", expand("prep/{s}.txt", s=SAMPLES)
        output: "combined.txt"
        resources: mem_mb=100, runtime=5
        shell: "cat {input} > {output}"
    """
)


@pytest.fixture(scope="module")
def plugin_env(slurm_identities: dict[str, str]) -> dict[str, str]:
    apply_plugin_cluster(slurm_identities)
    return slurm_identities


@pytest.fixture
def flow_dir(plugin_env: dict[str, str]) -> Path:
    return new_flow_dir(plugin_env, "plugin-tests")


def converged_args(env: dict[str, str], run_id: str, *extra: str) -> list[str]:
    return [
        "--executor=converged",
        f"--converged-namespace={NS}",
        "--converged-slurm-cluster=converged-plugin",
        "--converged-controller=embedded",
        "--converged-default-backend=slurm",  # the Kueue backend is tested elsewhere
        f"--converged-image={env['CONVERGED_SLURM_IMAGE']}",
        f"--converged-run-id={run_id}",
        "--converged-poll-interval=1",
        "--jobs=10",
        *extra,
    ]


def test_plan_prints_every_job_and_submits_nothing(plugin_env: dict[str, str], flow_dir: Path) -> None:
    (flow_dir / "Snakefile").write_text(HYBRID)
    run_id = f"sm-plan-{uuid.uuid4().hex[:6]}"
    cp = run_snakemake(
        plugin_env, flow_dir, *converged_args(plugin_env, run_id, "--converged-plan"), timeout=120
    )
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    start = lines.index(f"converged plan for run {run_id} in namespace {NS}: 4 jobs")
    # LEVEL JOB RULE WILDCARDS BACKEND TARGET GROUP START END RUNTIME BASIS DECISION REASON
    rows = lines[start + 3 : start + 7]
    table = [line.split() for line in rows]
    # prep and combine go wherever the live capacity says (the cpu partition may be busy with others'
    # jobs); the GPU step can only go to the gpu partition, and its reason says why not cpu
    assert [(r[2], r[4]) for r in table] == [("prep", "slurm")] * 2 + [
        ("train", "slurm"),
        ("combine", "slurm"),
    ]
    assert {r[5] for r in table} <= {"converged-plugin/cpu", "converged-plugin/gpu"}
    assert table[2][5] == "converged-plugin/gpu" and "Explicit" in table[2]
    assert "not slurm converged-plugin/cpu: no a100 GPUs" in rows[2]
    assert "groups of consecutive steps by resource shape:" in cp.stdout
    assert "estimated makespan " in cp.stdout and "GPU-h" in cp.stdout
    assert "and 1 jobs snakemake runs itself" in cp.stdout
    assert run_steps(plugin_env, run_id) == []
    assert not (flow_dir / "prep").exists()


def test_hybrid_workflow_runs_on_the_cpu_and_gpu_partitions(
    plugin_env: dict[str, str], flow_dir: Path
) -> None:
    (flow_dir / "Snakefile").write_text(HYBRID)
    run_id = f"sm-it-{uuid.uuid4().hex[:6]}"
    cp = run_snakemake(plugin_env, flow_dir, *converged_args(plugin_env, run_id))
    assert cp.returncode == 0, cp.stderr[-6000:]
    combined = (flow_dir / "combined.txt").read_text().splitlines()
    assert combined[0].startswith("train alice gpu gpus=") and combined[0] != "train alice gpu gpus="
    assert [line.split()[:2] for line in combined[1:]] == [["a", "alice"], ["b", "alice"]]
    steps = run_steps(plugin_env, run_id)
    assert sorted(s["spec"]["workflow"]["rule"] for s in steps) == ["combine", "prep", "prep", "train"]
    for step in steps:
        status = step["status"]
        assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
        assert step["spec"]["backend"] == "slurm" and step["spec"]["route"]["reason"]
        assert step["metadata"]["labels"]["converged.dev/rule"] == step["spec"]["workflow"]["rule"]
        assert "converged.dev/estimate-end" in step["metadata"]["annotations"]
    # the plan's dependencies: train waits for both prep jobs; the run's figures when it ended
    by_rule = {s["spec"]["workflow"]["rule"]: s for s in steps}
    preps = sorted(s["spec"]["workflow"]["jobId"] for s in steps if s["spec"]["workflow"]["rule"] == "prep")
    depends = by_rule["train"]["metadata"]["annotations"]["converged.dev/depends-on"]
    assert [int(i) for i in depends.split(",")] == preps
    assert f"converged run {run_id}: 4 steps, 4 ran, 4 estimated by the plan" in cp.stderr + cp.stdout
    # each prep step ran as Slurm job <jobId> on the partition the router chose for it
    ran = {line.split()[3]: line.split()[2] for line in combined[1:]}
    routed = {
        str(s["status"]["backendRef"]["jobId"]): s["spec"]["slurm"]["partition"]
        for s in steps
        if s["spec"]["workflow"]["rule"] == "prep"
    }
    assert ran == routed
    assert [s["spec"]["slurm"]["partition"] for s in steps if s["spec"]["workflow"]["rule"] == "train"] == [
        "gpu"
    ]
    table = kubectl(plugin_env, "get", "wfs", "-n", NS, "-l", f"converged.dev/run={run_id}")
    assert table.count("Succeeded") == 4 and table.count("slurm") == 4
    assert "-> WorkflowStep team-a/" in cp.stderr and "[Explicit]" in cp.stderr


def test_failing_step_reports_backend_job_exit_code_and_log_tail(
    plugin_env: dict[str, str], flow_dir: Path
) -> None:
    (flow_dir / "Snakefile").write_text(
        'rule boom:\n    output: "x.txt"\n    resources: mem_mb=100, runtime=5\n'
        '    shell: "echo the real cause >&2; exit 3"\n'
    )
    run_id = f"sm-fail-{uuid.uuid4().hex[:6]}"
    cp = run_snakemake(plugin_env, flow_dir, *converged_args(plugin_env, run_id))
    assert cp.returncode != 0
    (step,) = run_steps(plugin_env, run_id)
    job = step["status"]["backendRef"]["display"]
    assert f"backend job {job}, exit code 1, reason NonZeroExitCode" in cp.stderr
    assert f"log: {step['status']['logPath']}" in cp.stderr
    assert "the real cause" in cp.stderr.split("last lines of the log:", 1)[1]


def squeue_ids() -> set[int]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    return {int(x) for x in out.split()}


def test_ctrl_c_leaves_no_slurm_job_and_no_workflowstep(plugin_env: dict[str, str], flow_dir: Path) -> None:
    (flow_dir / "Snakefile").write_text(SLEEPERS)
    run_id = f"sm-int-{uuid.uuid4().hex[:6]}"

    def submitted_and_running() -> list[int] | None:
        steps = run_steps(plugin_env, run_id)
        ids = [s.get("status", {}).get("backendRef", {}).get("jobId") for s in steps]
        phases = {s.get("status", {}).get("phase") for s in steps}
        queued = squeue_ids()
        return ids if len(ids) == 3 and all(i in queued for i in ids) and "Running" in phases else None

    job_ids, output = interrupt_when(
        plugin_env,
        flow_dir,
        converged_args(plugin_env, run_id),
        "3 steps on Slurm, one running",
        submitted_and_running,
    )
    assert "cancelled run" in output and "its WorkflowSteps and backend jobs are gone" in output, output[
        -3000:
    ]
    assert "was deleted before it finished" not in output  # a cancel is no failure of each step
    assert run_steps(plugin_env, run_id) == []
    assert not set(job_ids) & squeue_ids()
    states = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "State", "-j", ",".join(map(str, job_ids))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(states) == 3 and all(s.startswith("CANCELLED") for s in states), states


def test_importing_the_plugin_needs_no_kubeconfig_and_local_runs_are_unaffected(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = "/nonexistent"
    probe = (
        "import sys, snakemake_executor_plugin_converged as p; "
        "assert 'kubernetes' not in sys.modules, 'kubernetes imported at plugin import'; "
        "assert 'converged_bridge.controller.runner' not in sys.modules; "
        "print(p.common_settings.non_local_exec)"
    )
    cp = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert (cp.returncode, cp.stdout.strip()) == (0, "True"), cp.stderr
    (tmp_path / "Snakefile").write_text(
        'rule hello:\n    output: "hello.txt"\n    shell: "echo hi > {output}"\n'
    )
    cp = subprocess.run(
        [SNAKEMAKE, "--executor", "local", "--cores", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cp.returncode == 0, cp.stderr
    assert (tmp_path / "hello.txt").read_text() == "hi\n"
    helped = subprocess.run([SNAKEMAKE, "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert "--converged-default-backend" in helped.stdout and "--converged-plan" in helped.stdout
