"""Acceptance of the real node: a Job queued on Kueue's `real` queue is admitted onto real-node-0,
runs `python3 -c` inside the step image (containerd + runc), writes into the shared directory, and
its pod's log is readable through the API server (which reaches the kubelet on 127.0.0.1)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from kubernetes import client

pytestmark = pytest.mark.integration

T = TypeVar("T")
NS = "default"
REAL_NODE = "real-node-0"
# Runs inside the step image; argv[1] is the output file in the shared directory.
STEP_SCRIPT = """
import json, os, socket, sys
import snakemake
info = {
    "python": sys.executable,
    "snakemake": snakemake.__version__,
    "node": os.environ["NODE_NAME"],
    "hostname": socket.gethostname(),
    "os_release": dict(l.split("=", 1) for l in open("/etc/os-release").read().split() if "=" in l),
}
with open(sys.argv[1], "w") as f:
    json.dump(info, f)
print("step ran:", json.dumps(info), flush=True)
"""


def eventually(what: str, probe: Callable[[], T | None], timeout: float = 120, interval: float = 0.5) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def step_job(name: str, image: str, shared: Path, output: Path) -> client.V1Job:
    requests = {"cpu": "500m", "memory": "256Mi"}
    container = client.V1Container(
        name="step",
        image=image,
        image_pull_policy="Never",  # the image exists only in the node's containerd
        command=["python3", "-c", STEP_SCRIPT, str(output)],
        env=[
            client.V1EnvVar(
                name="NODE_NAME",
                value_from=client.V1EnvVarSource(
                    field_ref=client.V1ObjectFieldSelector(field_path="spec.nodeName")
                ),
            )
        ],
        resources=client.V1ResourceRequirements(requests=requests, limits=requests),
        volume_mounts=[client.V1VolumeMount(name="shared", mount_path=str(shared))],
    )
    volume = client.V1Volume(
        name="shared", host_path=client.V1HostPathVolumeSource(path=str(shared), type="Directory")
    )
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name, labels={"kueue.x-k8s.io/queue-name": "real"}),
        spec=client.V1JobSpec(
            suspend=True,
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(restart_policy="Never", containers=[container], volumes=[volume])
            ),
        ),
    )


def workload_for(kube_api: client.ApiClient, job_name: str) -> dict[str, Any] | None:
    custom = client.CustomObjectsApi(kube_api)
    listed = custom.list_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", NS, "workloads")
    for wl in cast(dict[str, Any], listed)["items"]:
        if any(o.get("name") == job_name for o in wl["metadata"].get("ownerReferences", [])):
            return wl  # type: ignore[no-any-return]
    return None


def admitted(wl: dict[str, Any] | None) -> dict[str, Any] | None:
    conditions = (wl or {}).get("status", {}).get("conditions", [])
    return wl if any(c["type"] == "Admitted" and c["status"] == "True" for c in conditions) else None


@pytest.fixture
def job_name(kube_api: client.ApiClient) -> Iterator[str]:
    name = f"real-step-{uuid.uuid4().hex[:8]}"
    yield name
    client.BatchV1Api(kube_api).delete_namespaced_job(name, NS, propagation_policy="Background")


def test_queued_job_runs_in_the_step_image_on_the_real_node(
    cluster_env: dict[str, str], kube_api: client.ApiClient, job_name: str
) -> None:
    shared = Path(cluster_env["CONVERGED_SHARED_DIR"])
    output = shared / f"{job_name}.json"
    batch = client.BatchV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    batch.create_namespaced_job(NS, step_job(job_name, cluster_env["CONVERGED_STEP_IMAGE"], shared, output))
    try:
        wl = eventually("Kueue to admit the Job", lambda: admitted(workload_for(kube_api, job_name)))
        assert wl["status"]["admission"]["clusterQueue"] == "real"
        assert wl["status"]["admission"]["podSetAssignments"][0]["flavors"]["cpu"] == "real"

        def finished() -> client.V1Job | None:
            job = batch.read_namespaced_job(job_name, NS)
            return job if (job.status.succeeded or job.status.failed) else None

        job = eventually("the Job to finish", finished, timeout=180)
        pods = core.list_namespaced_pod(NS, label_selector=f"job-name={job_name}").items
        assert len(pods) == 1
        pod = pods[0]
        pod_name = str(pod.metadata.name)
        log = core.read_namespaced_pod_log(pod_name, NS, container="step")
        assert job.status.succeeded == 1, f"pod {pod.status.phase}: {pod.status.container_statuses}\n{log}"
        assert pod.spec.node_name == REAL_NODE

        ran = json.loads(output.read_text())
        assert ran["node"] == REAL_NODE
        assert ran["python"] == "/usr/bin/python3"
        assert ran["snakemake"].startswith("9.")
        assert ran["os_release"]["VERSION_CODENAME"] == "bookworm"
        assert ran["hostname"] == pod_name  # its own UTS namespace: a container, not the host
        # the log came from the kubelet through the API server
        assert f"step ran: {json.dumps(ran)}" in log
    finally:
        output.unlink(missing_ok=True)


def test_real_node_is_labelled_and_offers_what_the_real_queue_promises(kube_api: client.ApiClient) -> None:
    node = client.CoreV1Api(kube_api).read_node(REAL_NODE)
    assert (node.metadata.labels or {}).get("converged.dev/node-kind") == "real"
    assert not node.spec.unschedulable
    assert [(a.type, a.address) for a in node.status.addresses] == [("InternalIP", "127.0.0.1")]
    cq = cast(
        dict[str, Any],
        client.CustomObjectsApi(kube_api).get_cluster_custom_object(
            "kueue.x-k8s.io", "v1beta2", "clusterqueues", "real"
        ),
    )
    quota = {r["name"]: r["nominalQuota"] for r in cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"]}
    allocatable = node.status.allocatable or {}
    assert int(quota["cpu"]) <= int(allocatable["cpu"])
    assert parse_gi(quota["memory"]) <= parse_ki(allocatable["memory"]) / 1024**2


def parse_gi(value: str) -> float:
    assert value.endswith("Gi"), value
    return float(value[:-2])


def parse_ki(value: str) -> float:
    assert value.endswith("Ki"), value
    return float(value[:-2])
