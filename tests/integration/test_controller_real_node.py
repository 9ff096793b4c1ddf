"""Issue 5 on the real kubelet node: a Job step really runs in the step image, and deleting a running
step removes its Job and pods."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import RESTRICTED_NS, TEST_LABELS, ControllerProcess, eventually, kubectl
from tests.integration.test_controller_slurm import TERMINAL, create, get, wait_phase

pytestmark = pytest.mark.integration

NS = RESTRICTED_NS  # LocalQueue `real`, Pod Security `restricted`, pods as alice (conftest)
IMAGE = "localhost/converged/step:local"


def real_step(name: str, command: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "WorkflowStep",
        "metadata": {"name": name, "namespace": NS, "labels": dict(TEST_LABELS)},
        "spec": {
            "workflow": {"runId": "it-real", "rule": "real node", "jobId": 1},
            "backend": "kueue",
            "image": IMAGE,
            "command": command,
            "resources": {"cpus": 1, "memMiB": 256, "runtimeMinutes": 5},
        },
    }


def pods_of(env: dict[str, str], job: str) -> list[dict[str, Any]]:
    return json.loads(kubectl(env, "get", "pods", "-n", NS, "-l", f"job-name={job}", "-o", "json"))["items"]  # type: ignore[no-any-return]


def test_job_step_writes_its_output_for_real(
    real_controller: ControllerProcess, cluster_env: dict[str, str], workdir: Path
) -> None:
    env, name = cluster_env, f"real-{uuid.uuid4().hex[:6]}"
    out = workdir / f"{name}.txt"  # open to the step's user
    script = (
        f"import snakemake, sys; open({str(out)!r}, 'w').write(sys.executable + ' ' + snakemake.__version__)"
    )
    create(env, real_step(name, ["python3", "-c", script]))
    status = wait_phase(env, NS, name, TERMINAL, timeout=120)["status"]
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    assert out.read_text().startswith("/usr/bin/python3 9.")  # the image's Python and snakemake
    pods = pods_of(env, status["backendRef"]["name"])
    assert [p["spec"]["nodeName"] for p in pods] == ["real-node-0"]


def test_deleting_a_running_step_removes_its_job_and_pods(
    real_controller: ControllerProcess, cluster_env: dict[str, str]
) -> None:
    env, name = cluster_env, f"real-del-{uuid.uuid4().hex[:6]}"
    create(env, real_step(name, ["sleep", "300"]))
    running = wait_phase(env, NS, name, {"Running"}, timeout=120)["status"]
    job = running["backendRef"]["name"]
    assert pods_of(env, job)
    kubectl(env, "delete", "wfs", name, "-n", NS, "--timeout=60s")
    assert get(env, NS, name) is None
    eventually(
        "the Job to be gone", lambda: not kubectl(env, "get", "job", job, "-n", NS, "--ignore-not-found"), 60
    )
    eventually("its pods to be gone", lambda: not pods_of(env, job), 90)
