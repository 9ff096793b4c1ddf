"""Acceptance of the local cluster's Kubernetes side: Kueue admits suspended Jobs onto kwok nodes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
from kubernetes import client

from tests.integration.conftest import eventually

pytestmark = pytest.mark.integration

NS = "default"


def queued_job(name: str, cpu: str, gpus: int = 0) -> client.V1Job:
    requests = {"cpu": cpu, "memory": "256Mi"}
    if gpus:
        requests["nvidia.com/gpu"] = str(gpus)
    container = client.V1Container(
        name="main",
        image="registry.invalid/never-pulled:1",
        command=["true"],
        resources=client.V1ResourceRequirements(requests=requests, limits=requests),
    )
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name, labels={"kueue.x-k8s.io/queue-name": "default"}),
        spec=client.V1JobSpec(
            suspend=True,
            backoff_limit=0,
            completions=1,
            parallelism=1,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(restart_policy="Never", containers=[container])
            ),
        ),
    )


@pytest.fixture
def batch(kube_api: client.ApiClient) -> Iterator[tuple[client.BatchV1Api, list[str]]]:
    api = client.BatchV1Api(kube_api)
    created: list[str] = []
    yield api, created
    for name in created:
        api.delete_namespaced_job(name, NS, propagation_policy="Background")


def workload_for(kube_api: client.ApiClient, job_name: str) -> dict[str, Any] | None:
    custom = client.CustomObjectsApi(kube_api)
    listed = custom.list_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", NS, "workloads")
    items: list[dict[str, Any]] = cast(dict[str, Any], listed)["items"]
    for wl in items:
        if any(o.get("name") == job_name for o in wl["metadata"].get("ownerReferences", [])):
            return wl
    return None


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return c  # type: ignore[no-any-return]
    return None


def test_queued_job_is_admitted_and_completes_on_a_kwok_node(
    kube_api: client.ApiClient, batch: tuple[client.BatchV1Api, list[str]]
) -> None:
    api, created = batch
    name = f"fits-{uuid.uuid4().hex[:8]}"
    api.create_namespaced_job(NS, queued_job(name, cpu="1"))
    created.append(name)

    wl = eventually(
        "the Workload to be admitted",
        lambda: (
            (w := workload_for(kube_api, name))
            and (c := condition(w, "Admitted"))
            and c["status"] == "True"
            and w
        ),
    )
    assert wl["status"]["admission"]["podSetAssignments"][0]["flavors"]["cpu"] == "kwok"
    done = eventually(
        "the Job to succeed", lambda: (j := api.read_namespaced_job(name, NS)).status.succeeded and j
    )
    assert done.spec.suspend is False
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(NS, label_selector=f"job-name={name}").items
    assert pods and all(p.spec.node_name.startswith("kwok-node-") for p in pods)


def test_job_over_quota_stays_suspended_with_kueue_reason(
    kube_api: client.ApiClient, batch: tuple[client.BatchV1Api, list[str]]
) -> None:
    api, created = batch
    name = f"too-big-{uuid.uuid4().hex[:8]}"
    api.create_namespaced_job(NS, queued_job(name, cpu="100"))
    created.append(name)

    reserved = eventually(
        "Kueue to report why the Workload waits",
        lambda: (w := workload_for(kube_api, name)) and condition(w, "QuotaReserved"),
    )
    assert reserved["status"] == "False"
    assert reserved["reason"] == "Pending"
    assert "insufficient quota" in reserved["message"]
    assert api.read_namespaced_job(name, NS).spec.suspend is True


def test_gpu_job_is_admitted_to_the_gpu_flavor(
    kube_api: client.ApiClient, batch: tuple[client.BatchV1Api, list[str]]
) -> None:
    api, created = batch
    name = f"gpu-{uuid.uuid4().hex[:8]}"
    api.create_namespaced_job(NS, queued_job(name, cpu="1", gpus=1))
    created.append(name)

    eventually("the GPU Job to succeed", lambda: api.read_namespaced_job(name, NS).status.succeeded)
    wl = workload_for(kube_api, name)
    assert wl is not None
    assert wl["status"]["admission"]["podSetAssignments"][0]["flavors"]["nvidia.com/gpu"] == "kwok-gpu"
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(NS, label_selector=f"job-name={name}").items
    assert [p.spec.node_name for p in pods] == ["kwok-node-3"]
