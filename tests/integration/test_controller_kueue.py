"""Issue 5 acceptance: Kubernetes-backed WorkflowSteps through Kueue on the local cluster (kwok nodes)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.backends.kueue.operators import KueueSite, build_operator_object
from converged_bridge.backends.kueue.operators.shared import SharedVolume
from tests.integration.conftest import TEST_LABELS, ControllerProcess, apply, eventually, kubectl
from tests.integration.test_controller_slurm import TERMINAL, create, get, wait_phase

pytestmark = pytest.mark.integration

NS = "team-a"


def kueue_step(name: str, *, cpus: int = 1, operator: str = "job", **resources: Any) -> dict[str, Any]:
    return {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "WorkflowStep",
        "metadata": {"name": name, "namespace": NS, "labels": dict(TEST_LABELS)},
        "spec": {
            "workflow": {"runId": "it-kueue", "rule": "kueue demo", "jobId": 1},
            "backend": "kueue",
            "operator": operator,
            "kueue": {"localQueue": "default"},
            "image": "registry.invalid/converged/never-pulled-on-kwok:1",
            "command": ["python3", "-c", "print('hi')"],
            "resources": {"cpus": cpus, "memMiB": 256, "runtimeMinutes": 10, **resources},
        },
    }


@pytest.fixture(scope="module")
def kueue_queue(slurm_identities: dict[str, str]) -> dict[str, str]:
    """A LocalQueue `default` in team-a pointing at the kwok ClusterQueue."""
    apply(
        slurm_identities,
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": "default", "namespace": NS},
            "spec": {"clusterQueue": "default"},
        },
    )
    return slurm_identities


HOLDER_LABEL = "converged-test/quota-holder"


def hold_quota(env: dict[str, str], name: str, cpus: int) -> None:
    """A plain Kueue Job that holds `cpus` of quota; kwok leaves its pod alone (status=custom)."""
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"kueue.x-k8s.io/queue-name": "default", HOLDER_LABEL: "true"},
        },
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"kwok.x-k8s.io/status": "custom"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "hold",
                            "image": "registry.invalid/hold:1",
                            "resources": {"requests": {"cpu": str(cpus), "memory": "1Gi"}},
                        }
                    ],
                },
            },
        },
    }
    apply(env, job)
    eventually(
        f"{name} to be admitted",
        lambda: kubectl(env, "get", "job", name, "-n", NS, "-o", "jsonpath={.spec.suspend}") == "false",
        60,
    )


@pytest.fixture
def blocker(kueue_queue: dict[str, str]) -> Iterator[str]:
    """Quota held so that only 4 CPUs stay free on flavor kwok and 2 on kwok-gpu; yields the big holder."""
    big, spill = f"blocker-{uuid.uuid4().hex[:6]}", f"spill-{uuid.uuid4().hex[:6]}"
    # holders a run cut short left behind would keep the quota (and this test's holders from admission)
    kubectl(kueue_queue, "delete", "job", "-l", HOLDER_LABEL, "-n", NS, "--ignore-not-found", "--wait=true")
    hold_quota(kueue_queue, big, 20)  # kwok: 20 of 24
    hold_quota(kueue_queue, spill, 6)  # does not fit kwok any more: kwok-gpu, 6 of 8
    yield big
    kubectl(kueue_queue, "delete", "job", big, spill, "-n", NS, "--ignore-not-found", "--wait=false")


def job_of(env: dict[str, str], step: dict[str, Any]) -> dict[str, Any] | None:
    ref = step.get("status", {}).get("backendRef", {})
    out = kubectl(env, "get", "job", ref.get("name", "none"), "-n", NS, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def test_job_step_is_admitted_runs_on_kwok_and_succeeds(
    controller: ControllerProcess, kueue_queue: dict[str, str]
) -> None:
    env, name = kueue_queue, f"kq-ok-{uuid.uuid4().hex[:6]}"
    create(env, kueue_step(name))
    status = wait_phase(env, NS, name, TERMINAL)["status"]
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    assert status["backendRef"]["kind"] == "Job" and status["backendRef"]["workload"]
    pods = json.loads(
        kubectl(env, "get", "pods", "-n", NS, "-l", f"job-name={status['backendRef']['name']}", "-o", "json")
    )["items"]
    assert pods and all(p["spec"]["nodeName"].startswith("kwok-node-") for p in pods)
    job = job_of(env, wait_phase(env, NS, name, TERMINAL))
    assert job is not None
    assert job["metadata"]["ownerReferences"][0]["kind"] == "WorkflowStep"
    assert (
        job["spec"]["backoffLimit"],
        job["spec"]["completions"],
        job["spec"]["activeDeadlineSeconds"],
    ) == (0, 1, 600)
    assert f"Job/{status['backendRef']['name']}" in kubectl(env, "get", "wfs", name, "-n", NS)


def test_step_over_quota_waits_with_kueue_reason_then_runs(
    controller: ControllerProcess, kueue_queue: dict[str, str], blocker: str
) -> None:
    env, name = kueue_queue, f"kq-quota-{uuid.uuid4().hex[:6]}"
    # fits a kwok node (8 CPUs) but not the 4 CPUs the blocker leaves of the flavor's quota
    create(env, kueue_step(name, cpus=6))

    def queued_with_reason() -> dict[str, Any] | None:
        obj = get(env, NS, name)
        status = (obj or {}).get("status", {})
        return (
            status
            if status.get("phase") == "Queued" and "insufficient unused quota" in status.get("reason", "")
            else None
        )

    status = eventually("the step to wait for quota with Kueue's reason", queued_with_reason, 60)
    assert "insufficient unused quota" in kubectl(env, "get", "wfs", name, "-n", NS)  # Kueue's words
    assert status["backendRef"]["kind"] == "Job"
    kubectl(env, "delete", "job", blocker, "-n", NS)
    done = wait_phase(env, NS, name, TERMINAL, timeout=90)["status"]
    assert done["phase"] == "Succeeded"


def test_deleting_a_queued_step_removes_its_job(
    controller: ControllerProcess, kueue_queue: dict[str, str], blocker: str
) -> None:
    env, name = kueue_queue, f"kq-del-{uuid.uuid4().hex[:6]}"
    create(env, kueue_step(name, cpus=6))
    step = eventually("the step's Job", lambda: (o := get(env, NS, name)) and job_of(env, o) and o, 60)
    job_name = step["status"]["backendRef"]["name"]
    kubectl(env, "delete", "wfs", name, "-n", NS, "--timeout=60s")
    eventually(
        "the Job to be gone",
        lambda: not kubectl(env, "get", "job", job_name, "-n", NS, "--ignore-not-found"),
        60,
    )


def test_gpu_step_lands_only_on_the_gpu_flavor(
    controller: ControllerProcess, kueue_queue: dict[str, str]
) -> None:
    env, name = kueue_queue, f"kq-gpu-{uuid.uuid4().hex[:6]}"
    create(env, kueue_step(name, gpus=1, gpuModel="a100"))
    status = wait_phase(env, NS, name, TERMINAL)["status"]
    assert status["phase"] == "Succeeded"
    job = job_of(env, get(env, NS, name) or {})
    assert job is not None
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    pods = json.loads(
        kubectl(env, "get", "pods", "-n", NS, "-l", f"job-name={job['metadata']['name']}", "-o", "json")
    )["items"]
    assert [p["spec"]["nodeName"] for p in pods] == ["kwok-node-3"]
    wl = json.loads(kubectl(env, "get", "workloads", "-n", NS, "-o", "json"))["items"]
    mine = [w for w in wl if w["metadata"]["name"] == status["backendRef"]["workload"]]
    assert (
        mine
        and mine[0]["status"]["admission"]["podSetAssignments"][0]["flavors"]["nvidia.com/gpu"] == "kwok-gpu"
    )


def test_kubernetes_step_without_image_is_refused(
    controller: ControllerProcess, kueue_queue: dict[str, str]
) -> None:
    env, name = kueue_queue, f"kq-noimg-{uuid.uuid4().hex[:6]}"
    manifest = kueue_step(name)
    del manifest["spec"]["image"]
    create(env, manifest)
    status = wait_phase(env, NS, name, TERMINAL)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec")
    assert "image" in status["message"] and "backendRef" not in status


@pytest.mark.parametrize("operator", ["job", "jobset", "mpijob"])
def test_every_built_object_passes_server_side_validation(kueue_queue: dict[str, str], operator: str) -> None:
    extra: dict[str, Any] = {"nodes": 2, "tasks": 4} if operator == "mpijob" else {}
    manifest = kueue_step(f"dry-{operator}", **extra)
    manifest["spec"]["operator"] = operator
    manifest["metadata"]["uid"] = str(uuid.uuid4())
    step = WorkflowStep.model_validate(manifest)
    built = build_operator_object(
        step, KueueSite(shared_volumes=(SharedVolume("/var/lib/converged-local/shared"),))
    )
    out = kubectl(
        kueue_queue, "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(built.body)
    )
    assert json.loads(out)["kind"] == built.kind.kind


@pytest.mark.parametrize(("operator", "plural"), [("jobset", "jobsets"), ("mpijob", "mpijobs")])
def test_jobset_and_mpijob_steps_are_admitted_and_driven_by_their_operators(
    controller: ControllerProcess, kueue_queue: dict[str, str], operator: str, plural: str
) -> None:
    """On the kwok flavor: Kueue admits the object, the real operator makes its pods, kwok completes
    them (kwok runs no command); the step follows the object to Succeeded. Deleting it removes it."""
    env, name = kueue_queue, f"kq-{operator}-{uuid.uuid4().hex[:6]}"
    create(env, {**kueue_step(name, operator=operator, nodes=2, tasks=2)})
    status = wait_phase(env, NS, name, TERMINAL, timeout=120)["status"]
    assert status["phase"] == "Succeeded", status
    assert status["backendRef"]["workload"] and status["backendRef"]["kind"] == kubectl(
        env, "get", plural, status["backendRef"]["name"], "-n", NS, "-o", "jsonpath={.kind}"
    )
    kubectl(env, "delete", "wfs", name, "-n", NS, "--timeout=60s")
    assert not kubectl(env, "get", plural, status["backendRef"]["name"], "-n", NS, "--ignore-not-found")


def test_minicluster_step_is_refused_while_its_crd_is_not_served(
    controller: ControllerProcess, kueue_queue: dict[str, str]
) -> None:
    env, name = kueue_queue, f"kq-flux-{uuid.uuid4().hex[:6]}"
    create(env, kueue_step(name, operator="minicluster"))
    status = wait_phase(env, NS, name, TERMINAL)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "OperatorNotInstalled")
    assert "flux-framework.org/v1alpha2" in status["message"]
