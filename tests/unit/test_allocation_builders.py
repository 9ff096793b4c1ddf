"""What a StepAllocation becomes on each backend (pure builders): the Slurm batch job running the agent and
each step's job-step script; the Kueue Job whose pod runs the agent, and each step's in-pod script."""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

from converged_bridge.allocation.paths import build_allocation_paths
from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.backends.kueue.allocation import build_allocation_job
from converged_bridge.backends.kueue.allocation import build_grouped_step_script as build_kueue_step
from converged_bridge.backends.kueue.operators.common import KueueSite, RunAs
from converged_bridge.backends.kueue.operators.shared import SharedVolume
from converged_bridge.backends.slurm.allocation import build_allocation_submission
from converged_bridge.backends.slurm.allocation import build_grouped_step_script as build_slurm_step
from converged_bridge.slurm.batch_script import build_sbatch_directives

UID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
STEP_UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
HOSTILE = "echo '$(touch /tmp/pwned)' \"`id`\"; exit 0"
CLUSTER = SlurmClusterSpec.model_validate(
    {
        "transport": "cli",
        "containerRuntime": "apptainer",
        "bindPaths": ["/shared"],
        "defaults": {"partition": "cpu", "account": "lab"},
        "userMapping": [
            {
                "namespace": "team-a",
                "user": "alice",
                "tokenSecretRef": {"namespace": "s", "name": "t", "key": "k"},
            }
        ],
    }
)


def allocation(backend: str = "slurm", **spec: Any) -> StepAllocation:
    place = (
        {"slurm": {"cluster": "hpc", "partition": "gpu"}}
        if backend == "slurm"
        else {"kueue": {"localQueue": "real"}}
    )
    return StepAllocation.model_validate(
        {
            "metadata": {"name": "sm-1-g2", "namespace": "team-a", "uid": UID},
            "spec": {
                "runId": "sm-1",
                "group": "g2",
                "backend": backend,
                "image": "/images/step.sif" if backend == "slurm" else "localhost/step:1",
                "workingDir": "/shared/run",
                "resources": {"cpus": 2, "memMiB": 954, "gpus": 1, "gpuModel": "a100"},
                "slots": 2,
                "runtimeMinutes": 30,
                **place,
                **spec,
            },
        }
    )


def step(backend: str = "slurm") -> WorkflowStep:
    place = {"slurm": {"cluster": "hpc"}} if backend == "slurm" else {"kueue": {"localQueue": "real"}}
    return WorkflowStep.model_validate(
        {
            "metadata": {"name": "sm-1-analysis-2", "namespace": "team-a", "uid": STEP_UID},
            "spec": {
                "workflow": {"runId": "sm-1", "rule": "analysis (gpu)", "jobId": 2},
                "backend": backend,
                "command": ["/bin/sh", "-c", HOSTILE],
                "image": "/images/step.sif" if backend == "slurm" else "localhost/step:1",
                "workingDir": "/shared/run",
                "env": [{"name": "MODE", "value": "a'b $(c)"}],
                "resources": {"cpus": 2, "memMiB": 954, "gpus": 1, "gpuModel": "a100", "runtimeMinutes": 5},
                **place,
            },
        }
    )


def test_the_slurm_job_holds_every_slot_on_one_node_and_runs_the_agent() -> None:
    alloc = allocation()
    paths = build_allocation_paths(alloc)
    sub = build_allocation_submission(alloc, CLUSTER, paths, user="alice")
    assert build_sbatch_directives(sub.options) == [
        "#SBATCH --job-name=alloc-sm-1-g2",
        f"#SBATCH --comment=converged:{UID}",
        f"#SBATCH --output=/shared/run/.converged/logs/converged-{UID}.log",
        f"#SBATCH --error=/shared/run/.converged/logs/converged-{UID}.log",
        "#SBATCH --export=NONE",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=2",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=1908M",
        "#SBATCH --time=30",
        "#SBATCH --gres=gpu:a100:2",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
    ]
    assert (sub.user, sub.working_dir) == ("alice", "/shared/run")
    lines = sub.script.splitlines()
    assert lines[0] == "#!/bin/bash" and lines[1].startswith("#SBATCH --job-name=")
    assert f"spool={paths.spool}" in lines and "slots=2" in lines
    assert "--cpus-per-task=2 --mem=954M --gres=gpu:a100:1" in sub.script
    assert subprocess.run(["bash", "-n"], input=sub.script, text=True, check=False).returncode == 0


def test_a_slurm_steps_script_is_its_own_job_body_with_a_header_for_the_agent() -> None:
    script = build_slurm_step(step(), CLUSTER, uid=STEP_UID, log_dir="/shared/run/.converged/logs")
    lines = script.splitlines()
    assert lines[:2] == ["#!/bin/bash", "# converged-step analysis__gpu_-2 5"]
    assert "cd -- /shared/run" in lines
    assert f"export MODE={shlex.quote('a' + chr(39) + 'b $(c)')}" in lines
    assert lines[-1].startswith("exec apptainer --quiet exec --no-eval --cleanenv --nv --bind /shared")
    assert shlex.split(lines[-1])[-3:] == ["/bin/sh", "-c", HOSTILE]
    assert "#SBATCH" not in script


def test_the_kueue_job_is_one_suspended_pod_of_every_slot_running_the_agent() -> None:
    alloc = allocation("kueue", slurm=None)
    paths = build_allocation_paths(alloc)
    site = KueueSite(
        shared_volumes=(SharedVolume("/shared", "home"),),
        image_pull_policy="Never",
        run_as=RunAs(1001, 1001, "alice"),
    )
    built = build_allocation_job(alloc, site, paths)
    body = built.body
    assert built.name == "sm-1-g2" and body["spec"]["suspend"] is True
    labels = body["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "real" and labels["converged.dev/allocation-uid"] == UID
    assert body["metadata"]["ownerReferences"][0]["kind"] == "StepAllocation"
    assert (body["spec"]["backoffLimit"], body["spec"]["activeDeadlineSeconds"]) == (0, 1800)
    pod = body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "1908Mi", "nvidia.com/gpu": "2"},
        "limits": {"nvidia.com/gpu": "2"},
    }
    assert container["command"][:2] == ["/bin/bash", "-c"] and "setsid timeout" in container["command"][2]
    assert pod["securityContext"]["runAsUser"] == 1001
    assert pod["volumes"] == [{"name": "shared-0", "persistentVolumeClaim": {"claimName": "home"}}]
    assert container["volumeMounts"] == [{"name": "shared-0", "mountPath": "/shared"}]
    assert body["spec"]["template"]["metadata"]["labels"]["converged.dev/step-uid"] == UID


def test_a_kueue_steps_script_runs_its_command_verbatim_in_the_pod() -> None:
    script = build_kueue_step(step("kueue"))
    lines = script.splitlines()
    assert lines[1] == "# converged-step analysis__gpu_-2 5"
    assert shlex.split(lines[-1]) == ["exec", "/bin/sh", "-c", HOSTILE]
    out = subprocess.run(
        ["bash", "-c", script.replace("cd -- /shared/run", "cd /")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("$(touch /tmp/pwned) ")
