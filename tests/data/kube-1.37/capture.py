"""Capture real LIST answers and WATCH streams of Kubernetes 1.37 for the informer's tests
(tests/unit/test_informer.py), and what the Kueue unit's informers list for one finished Kueue step.

Run against the local cluster as `make up` leaves it (the site's deployed controller drives the step):
    PYTHONPATH=.:bridge .venv/bin/python tests/data/kube-1.37/capture.py
"""

import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from converged_bridge.wire import MANAGED_LABEL, MANAGED_VALUE, STEP_UID_LABEL

BIN = "/var/lib/converged-local/bin/kubectl"
KUBECONFIG = "/var/lib/converged-local/kubeconfig"
out = Path(__file__).resolve().parent
NS = "default"
SELECTOR = "capture=informer"


def kubectl(*args, input=None):
    cp = subprocess.run(
        [BIN, f"--kubeconfig={KUBECONFIG}", *args], input=input, capture_output=True, text=True
    )
    if cp.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {cp.stderr}")
    return cp.stdout


def strip(obj):
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


def save(name, doc):
    for item in doc.get("items") or []:
        strip(item)
    (out / name).write_text(json.dumps(strip(doc), indent=2, sort_keys=True) + "\n")


def get(path):
    return json.loads(kubectl("get", "--raw", path))


def save_lines(name, raw):
    """A WATCH answer's lines, managedFields dropped."""
    lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
    for event in lines:
        strip(event["object"])
    (out / name).write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in lines))


def watch_in_background(path, rv, seconds):
    """The raw lines of a WATCH from `rv` that the server ends after `seconds`."""
    lines = []
    query = f"watch=true&allowWatchBookmarks=true&timeoutSeconds={seconds}&resourceVersion={rv}"
    query += f"&labelSelector={quote(SELECTOR)}"

    def run():
        lines.append(kubectl("get", "--raw", f"{path}?{query}"))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, lines


def job(name):
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "labels": {"capture": "informer"}},
        "spec": {  # suspended and on no queue: nothing ever runs it
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "x", "command": ["true"]}],
                }
            },
        },
    }


def create(*objs):
    kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))


JOBS = "/apis/batch/v1/jobs"
kubectl("delete", "jobs", "-n", NS, "-l", SELECTOR, "--ignore-not-found")
create(job("capture-a"), job("capture-b"))
listed = get(f"{JOBS}?labelSelector={quote(SELECTOR)}")
save("jobs-list.json", listed)

thread, lines = watch_in_background(JOBS, listed["metadata"]["resourceVersion"], 4)
time.sleep(1)
create(job("capture-c"))
kubectl("label", "job", "-n", NS, "capture-a", "changed=yes")
thread.join()
save_lines("jobs-watch-1.jsonl", lines[0])
last = json.loads(lines[0].strip().splitlines()[-1])["object"]["metadata"]["resourceVersion"]

thread, lines = watch_in_background(JOBS, last, 3)
time.sleep(1)
kubectl("delete", "job", "-n", NS, "capture-b", "--wait=true")
thread.join()
save_lines("jobs-watch-2.jsonl", lines[0])
save("jobs-list-later.json", get(f"{JOBS}?labelSelector={quote(SELECTOR)}"))

kubectl("delete", "jobs", "-n", NS, "-l", SELECTOR)
# a version long compacted away (etcd is compacted every 5 minutes: a cluster up for 10 has none of it)
thread, lines = watch_in_background(JOBS, "1", 3)
thread.join()
if not lines[0].startswith('{"type":"ERROR"'):
    raise SystemExit("resourceVersion 1 is not compacted yet: run again once the cluster is 10 min old")
save_lines("watch-expired.jsonl", lines[0])

# One Kueue step on the kwok nodes, driven by the site's controller to its end, and what the Kueue
# unit's informers list for it (only its own objects kept, and namespaces default and alice)
name = f"capture-{uuid.uuid4().hex[:6]}"
step = {
    "apiVersion": "converged.dev/v1alpha1",
    "kind": "WorkflowStep",
    "metadata": {"name": name, "namespace": NS},
    "spec": {
        "workflow": {"runId": name, "rule": "capture", "jobId": 1},
        "backend": "kueue",
        "command": ["true"],
        "resources": {"cpus": 1, "memMiB": 50, "runtimeMinutes": 5},
        "kueue": {"localQueue": "default"},
        "image": "registry.invalid/capture:1",
    },
}
create(step)
for _ in range(120):
    got = json.loads(kubectl("get", "wfs", "-n", NS, name, "-o", "json"))
    if (got.get("status") or {}).get("phase") == "Succeeded":
        break
    time.sleep(1)
uid = got["metadata"]["uid"]
jobs = get(f"{JOBS}?labelSelector={quote(f'{MANAGED_LABEL}={MANAGED_VALUE}')}")
jobs["items"] = [j for j in jobs["items"] if j["metadata"]["labels"].get(STEP_UID_LABEL) == uid]
job_uids = {j["metadata"]["uid"] for j in jobs["items"]}
workloads = get("/apis/kueue.x-k8s.io/v1beta2/workloads")
workloads["items"] = [
    w for w in workloads["items"] if {o["uid"] for o in w["metadata"].get("ownerReferences", [])} & job_uids
]
pods = get(f"/api/v1/pods?labelSelector={quote(STEP_UID_LABEL)}")
pods["items"] = [p for p in pods["items"] if p["metadata"]["labels"].get(STEP_UID_LABEL) == uid]
namespaces = get("/api/v1/namespaces")
namespaces["items"] = [n for n in namespaces["items"] if n["metadata"]["name"] in (NS, "alice")]
got.pop("status", None)  # the step as the controller first sees it
save("workflowstep-kueue.json", got)
save("step-jobs-list.json", jobs)
save("step-workloads-list.json", workloads)
save("step-pods-list.json", pods)
save("namespaces-list.json", namespaces)
kubectl("delete", "wfs", "-n", NS, name)
