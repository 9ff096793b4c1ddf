"""Capture real Kueue 0.14 objects for unit tests (run against the local cluster)."""

import json
import os
import time
from pathlib import Path

from tests.integration.conftest import kubectl
from tests.integration.test_controller_kueue import hold_quota

NS = os.environ.get("NS", "team-a")
env = {
    "CONVERGED_LOCAL_BIN": "/var/lib/converged-local/bin",
    "KUBECONFIG": "/var/lib/converged-local/kubeconfig",
}
out = Path("/work/main/tests/data/kueue-0.14")


def save(name, obj):
    obj["metadata"].pop("managedFields", None)
    (out / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def job_doc(name, cpus, annotations=None, command=("true",)):
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "labels": {"kueue.x-k8s.io/queue-name": "default"}},
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "step",
                            "image": "registry.invalid/x:1",
                            "command": list(command),
                            "resources": {"requests": {"cpu": str(cpus), "memory": "256Mi"}},
                        }
                    ],
                },
            },
        },
    }


def get(kind, name):
    return json.loads(kubectl(env, "get", kind, name, "-n", NS, "-o", "json"))


def workload_of(job):
    for wl in json.loads(kubectl(env, "get", "workloads", "-n", NS, "-o", "json"))["items"]:
        if any(o["uid"] == job["metadata"]["uid"] for o in wl["metadata"].get("ownerReferences", [])):
            return wl


if not os.environ.get("ONLY_FAILED"):
    # 1. finished on kwok
    kubectl(env, "apply", "-f", "-", input=json.dumps(job_doc("cap-done", 1)))
    for _ in range(60):
        job = get("job", "cap-done")
        if job.get("status", {}).get("succeeded"):
            break
        time.sleep(1)
    time.sleep(2)
    job = get("job", "cap-done")
    save("job-succeeded.json", job)
    save("workload-finished.json", workload_of(job))
    pods = json.loads(kubectl(env, "get", "pods", "-n", NS, "-l", "job-name=cap-done", "-o", "json"))["items"]
    save("pod-succeeded.json", pods[0])
    # 2. pending for quota
    hold_quota(env, "cap-hold", 20)
    hold_quota(env, "cap-spill", 6)
    kubectl(env, "apply", "-f", "-", input=json.dumps(job_doc("cap-pending", 6)))
    for _ in range(30):
        job = get("job", "cap-pending")
        wl = workload_of(job)
        if wl and any(c["type"] == "QuotaReserved" for c in wl.get("status", {}).get("conditions", [])):
            break
        time.sleep(1)
    save("job-pending.json", job)
    save("workload-pending.json", wl)
    # 3. admitted, pod not running yet (kwok leaves a status=custom pod alone)
    save("workload-admitted.json", workload_of(get("job", "cap-hold")))
    save("job-admitted.json", get("job", "cap-hold"))
    for n in ("cap-done", "cap-pending", "cap-hold", "cap-spill"):
        kubectl(env, "delete", "job", n, "-n", NS, "--ignore-not-found", "--wait=false")
    print("captured", sorted(p.name for p in out.iterdir()))
# 4. failed on the real node: exit 3, its output kept as the termination message
real = job_doc(
    "cap-failed", 1, command=("python3", "-c", "import sys; print('boom: the real cause'); sys.exit(3)")
)
real["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "real"
c = real["spec"]["template"]["spec"]["containers"][0]
c["image"], c["imagePullPolicy"], c["terminationMessagePolicy"] = (
    "localhost/converged/step:local",
    "Never",
    "FallbackToLogsOnError",
)
kubectl(env, "apply", "-f", "-", input=json.dumps(real))
for _ in range(90):
    job = get("job", "cap-failed")
    if job.get("status", {}).get("failed"):
        break
    time.sleep(1)
time.sleep(2)
job = get("job", "cap-failed")
save("job-failed.json", job)
save("workload-failed.json", workload_of(job))
save(
    "pod-failed.json",
    json.loads(kubectl(env, "get", "pods", "-n", NS, "-l", "job-name=cap-failed", "-o", "json"))["items"][0],
)
kubectl(env, "delete", "job", "cap-failed", "-n", NS, "--wait=false")
