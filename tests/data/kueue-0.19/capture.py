"""Capture real Kueue 0.19 objects, read at both versions it serves (v1beta2, storage; v1beta1).

Run against the local cluster (Kubernetes 1.37, Kueue 0.19, no conversion webhook), as root:
    PYTHONPATH=.:deploy/local .venv/bin/python tests/data/kueue-0.19/capture.py
"""

import json
import time
from pathlib import Path

from tests.integration.conftest import kubectl

env = {
    "CONVERGED_LOCAL_BIN": "/var/lib/converged-local/bin",
    "KUBECONFIG": "/var/lib/converged-local/kubeconfig",
}
out = Path(__file__).resolve().parent
NS = "default"


def save(name, obj):
    obj.get("metadata", {}).pop("managedFields", None)
    (out / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def get(path):
    return json.loads(kubectl(env, "get", "--raw", path))


def apply(doc):
    kubectl(env, "apply", "--server-side", "--field-manager=capture", "-f", "-", input=json.dumps(doc))


save("discovery-kueue.json", get("/apis/kueue.x-k8s.io"))

# A ClusterQueue in a cohort, written at v1beta2 (cohortName), read back at both versions
apply(
    {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ClusterQueue",
        "metadata": {"name": "capture-cohort"},
        "spec": {
            "cohortName": "capture",
            "namespaceSelector": {},
            "resourceGroups": [
                {
                    "coveredResources": ["cpu"],
                    "flavors": [{"name": "kwok", "resources": [{"name": "cpu", "nominalQuota": "4"}]}],
                }
            ],
        },
    }
)
time.sleep(2)
for v in ("v1beta2", "v1beta1"):
    save(f"clusterqueue-cohort-{v}.json", get(f"/apis/kueue.x-k8s.io/{v}/clusterqueues/capture-cohort"))
kubectl(env, "delete", "clusterqueue", "capture-cohort")

# A Job run on the real node: its Workload admitted, then finished, at both versions
job = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "capture-wl", "namespace": NS, "labels": {"kueue.x-k8s.io/queue-name": "real"}},
    "spec": {
        "suspend": True,
        "backoffLimit": 0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "step",
                        "image": "localhost/converged/step:local",
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", "sleep 3"],
                        "resources": {"requests": {"cpu": "1", "memory": "64Mi"}},
                    }
                ],
            }
        },
    },
}
apply(job)


def workload():
    items = get(f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{NS}/workloads")["items"]
    return next((w for w in items if w["metadata"]["name"].startswith("job-capture-wl-")), None)


for _ in range(60):
    wl = workload()
    if wl and any(
        c["type"] == "Admitted" and c["status"] == "True" for c in wl["status"].get("conditions", [])
    ):
        break
    time.sleep(0.5)
name = wl["metadata"]["name"]
for v in ("v1beta2", "v1beta1"):
    save(f"workload-admitted-{v}.json", get(f"/apis/kueue.x-k8s.io/{v}/namespaces/{NS}/workloads/{name}"))
for _ in range(60):
    wl = workload()
    if any(c["type"] == "Finished" and c["status"] == "True" for c in wl["status"].get("conditions", [])):
        break
    time.sleep(0.5)
for v in ("v1beta2", "v1beta1"):
    save(f"workload-finished-{v}.json", get(f"/apis/kueue.x-k8s.io/{v}/namespaces/{NS}/workloads/{name}"))
kubectl(env, "delete", "job", "capture-wl", "-n", NS)

# The real node's ClusterQueue and a LocalQueue, at both versions (LocalQueue status renamed a field)
for v in ("v1beta2", "v1beta1"):
    save(f"clusterqueue-real-{v}.json", get(f"/apis/kueue.x-k8s.io/{v}/clusterqueues/real"))
    save(f"localqueue-real-{v}.json", get(f"/apis/kueue.x-k8s.io/{v}/namespaces/{NS}/localqueues/real"))
print("captured into", out)
