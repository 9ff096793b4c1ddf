"""Issue 4 acceptance 4: exactly-once submission across a controller crash.

A controller that may patch WorkflowSteps but not their status (RBAC, on the real API server)
submits a step's job and fails to record it; it is then SIGKILLed. A fresh controller must adopt
the job it finds by the step's UID instead of submitting again: sacct shows exactly one job.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from localcluster import kubeconfig, pki
from localcluster.layout import Layout
from tests.integration.conftest import ControllerProcess, apply, eventually, kubectl
from tests.integration.test_controller_slurm import TERMINAL, create, get, step_manifest, wait_phase

pytestmark = pytest.mark.integration

IDENTITY = "converged-no-status"


@pytest.fixture(scope="module")
def status_blind_kubeconfig(slurm_identities: dict[str, str]) -> str:
    """A client identity that can do everything the controller does except write /status."""
    layout = Layout.default()
    pki.cert(layout.pki, IDENTITY, f"/CN={IDENTITY}")
    rules = [
        {
            "apiGroups": ["converged.dev"],
            "resources": ["workflowsteps"],
            "verbs": ["get", "list", "watch", "patch", "update"],
        },
        {"apiGroups": ["converged.dev"], "resources": ["slurmclusters"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    apply(
        slurm_identities,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": IDENTITY},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": IDENTITY},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": IDENTITY},
            "subjects": [{"kind": "User", "name": IDENTITY, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    return str(kubeconfig.for_identity(layout, IDENTITY))


def jobs_with_comment(uid: str) -> list[str]:
    out = subprocess.run(
        ["sacct", "-P", "-n", "-X", "-a", "-S", "now-1hour", "-o", "JobID,Comment"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split("|")[0] for line in out.splitlines() if line.endswith(f"converged:{uid}")]


def test_controller_killed_after_submit_is_adopted_not_resubmitted(
    slurm_identities: dict[str, str], status_blind_kubeconfig: str, workdir: Path, tmp_path: Path
) -> None:
    env = slurm_identities
    name = f"crash-{uuid.uuid4().hex[:6]}"
    blind = ControllerProcess(env, tmp_path / "blind.log", kubeconfig=status_blind_kubeconfig)
    blind.start()
    try:
        uid = create(env, step_manifest(name, "team-a", ["sleep", "5"], workdir))["metadata"]["uid"]
        eventually("the blind controller to submit", lambda: jobs_with_comment(uid) or _squeue_has(uid), 60)
    finally:
        blind.kill()  # SIGKILL: no cleanup, no status
    obj = get(env, "team-a", name)
    assert obj is not None and "backendRef" not in obj.get("status", {}), "status must not have been recorded"
    assert "forbidden" in blind.log.read_text().lower()

    fresh = ControllerProcess(env, tmp_path / "fresh.log")
    fresh.start()
    try:
        status = wait_phase(env, "team-a", name, TERMINAL)["status"]
        assert status["phase"] == "Succeeded"
        jobs = eventually("accounting to hold the job", lambda: jobs_with_comment(uid), 30)
        assert jobs == [str(status["backendRef"]["jobId"])], f"exactly one job, got {jobs}"
        kubectl(env, "delete", "wfs", name, "-n", "team-a", "--timeout=60s")  # the finalizer goes with it
    finally:
        fresh.stop()


def _squeue_has(uid: str) -> bool:
    out = subprocess.run(["squeue", "--json"], capture_output=True, text=True, check=True).stdout
    return any(j.get("comment") == f"converged:{uid}" for j in json.loads(out)["jobs"])
