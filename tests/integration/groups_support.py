"""Helpers for the StepAllocation tests on the local cluster: manifests of an allocation and its steps,
reading them back, the Slurm job steps of an allocation, and the label their controllers select.

These tests label their objects `converged.dev/controller=groups-tests`, not the shared `tests`: other
test sessions on the same cluster run controllers that select `tests`, and a controller without
StepAllocations would run a grouped step as a job of its own.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

from tests.integration.conftest import eventually, kubectl

GROUPS_LABELS = {"converged.dev/controller": "groups-tests"}
GROUPS_SELECTOR = "converged.dev/controller=groups-tests"
NS = "team-a"  # Slurm user alice
SLURM_CLUSTER = "converged-apptainer"  # restd, Apptainer, the shared directory and the Slurm client bound
TERMINAL = {"Succeeded", "Failed", "Cancelled"}


def allocation_manifest(
    name: str, run_id: str, workdir: Path, image: str, backend: str = "slurm", **spec: Any
) -> dict[str, Any]:
    place = (
        {"slurm": {"cluster": SLURM_CLUSTER, "partition": "cpu"}}
        if backend == "slurm"
        else {"kueue": {"localQueue": "real"}}
    )
    return {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "StepAllocation",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {**GROUPS_LABELS, "converged.dev/run": run_id},
        },
        "spec": {
            "runId": run_id,
            "group": "g1",
            "backend": backend,
            "image": image,
            "workingDir": str(workdir),
            "resources": {"cpus": 1, "memMiB": 200},
            "slots": 2,
            "runtimeMinutes": 10,
            "idleSeconds": 120,
            **place,
            **spec,
        },
    }


def grouped_step(
    name: str, allocation: dict[str, Any], job_id: int, command: list[str], **resources: Any
) -> dict[str, Any]:
    spec = allocation["spec"]
    place = {"slurm": {"cluster": SLURM_CLUSTER, "partition": "cpu"}} if spec["backend"] == "slurm" else spec
    return {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "WorkflowStep",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {
                **allocation["metadata"]["labels"],
                "converged.dev/group": allocation["metadata"]["name"],
            },
        },
        "spec": {
            "workflow": {"runId": spec["runId"], "rule": "step", "jobId": job_id},
            "backend": spec["backend"],
            "command": command,
            "image": spec["image"],
            "workingDir": spec["workingDir"],
            "resources": {"cpus": 1, "memMiB": 200, **resources},
            **({"slurm": place["slurm"]} if spec["backend"] == "slurm" else {"kueue": spec["kueue"]}),
        },
    }


def create(env: dict[str, str], manifest: dict[str, Any]) -> dict[str, Any]:
    return json.loads(kubectl(env, "create", "-o", "json", "-f", "-", input=json.dumps(manifest)))  # type: ignore[no-any-return]


def get(env: dict[str, str], kind: str, name: str) -> dict[str, Any] | None:
    out = kubectl(env, "get", kind, name, "-n", NS, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def wait_for(
    env: dict[str, str], kind: str, name: str, phases: set[str], timeout: float = 120
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(env, kind, name)
        return obj if obj and (obj.get("status") or {}).get("phase") in phases else None

    return eventually(f"{kind} {name} to reach {phases}", probe, timeout)  # type: ignore[no-any-return]


def close(env: dict[str, str], name: str, count: int) -> None:
    patch = json.dumps({"spec": {"closed": True, "expectedSteps": count}})
    kubectl(env, "patch", "stepallocation", name, "-n", NS, "--type=merge", "-p", patch)


def job_steps(job_id: int) -> dict[str, tuple[str, str]]:
    """The job steps of a Slurm job, by name: (state, exit code)."""
    out = subprocess.run(
        ["sacct", "-P", "-n", "-j", str(job_id), "-o", "JobID,JobName,State,ExitCode"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    steps = {}
    for line in out.splitlines():
        job, name, state, code = line.split("|")
        if "." in job and not job.endswith((".batch", ".extern")):
            steps[name] = (state.split()[0], code)
    return steps


def jobs_with_comment(uid: str) -> list[str]:
    out = subprocess.run(
        ["sacct", "-P", "-n", "-X", "-a", "-S", "now-1hour", "-o", "JobID,Comment"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split("|")[0] for line in out.splitlines() if line.endswith(f"converged:{uid}")]


def new_id() -> str:
    return uuid.uuid4().hex[:6]
