"""Benchmark (issue 18): Kueue alone vs the same steps through converged, side by side in one run.

Kueue alone: N suspended batch Jobs with the queue label — the very Jobs converged's controller builds
for those steps (`build_job`, owner reference removed) — created in chunks of 200 with `kubectl
create`, onto the kwok nodes through ClusterQueue `default` (the floor: nothing but Kueue, the Job
controller and kwok). Then the same N steps as WorkflowSteps through the controller embedded in
`bench/controller_steps.py --backend kueue` (same namespace, queue, nodes). Measured for both: creation
to all finished, steps/s, creation -> admission (the Workload's Admitted condition; 1 s resolution);
for converged also end -> seen lag and API requests per step. The ratio is Kueue-alone makespan over
converged makespan (target >= 0.9). `--rounds` alternates the two sides (alone, converged, alone, ...)
so drifting load falls on both.

Usage: .venv/bin/python bench/kueue_floor.py [--steps 300] [--rounds 1] [--poll 2]
Runs on the local cluster as `make up` leaves it: namespace `default`, whose LocalQueue `default` is the
kwok nodes' ClusterQueue `default` (both sides).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.backends.kueue.operators.common import KueueSite
from converged_bridge.backends.kueue.operators.job import build_job
from converged_bridge.kube.core import KubeCore, load_api_client, object_path
from converged_bridge.kube.kueue_api import KueueApi
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.wire import JOBS

ROOT = Path(__file__).resolve().parents[1]
NS = "default"  # its LocalQueue `default` (made by `make up`) is the kwok ClusterQueue
KUBECTL = "/var/lib/converged-local/bin/kubectl"


def stamp(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def build_jobs(run: str, steps: int) -> list[dict[str, Any]]:
    """The Jobs converged's controller would create for the bench's steps (bench/controller_steps.py)."""
    jobs = []
    for i in range(steps):
        step = WorkflowStep.model_validate(
            {
                "apiVersion": "converged.dev/v1alpha1",
                "kind": "WorkflowStep",
                "metadata": {"name": f"{run}-{i}", "namespace": NS, "uid": str(uuid.uuid4())},
                "spec": {
                    "workflow": {"runId": run, "rule": "bench", "jobId": i},
                    "backend": "kueue",
                    "command": ["true"],
                    "resources": {"cpus": 1, "memMiB": 50, "runtimeMinutes": 5},
                    "kueue": {"localQueue": "default"},
                    "image": "registry.invalid/bench:1",
                },
            }
        )
        body = build_job(step, KueueSite(default_local_queue="default")).body
        body["metadata"].pop("ownerReferences", None)
        body["metadata"]["labels"]["bench/run"] = run
        jobs.append(body)
    return jobs


def kueue_alone(core: KubeCore, steps: int, kubeconfig: str) -> dict[str, Any]:
    run = f"floor-{uuid.uuid4().hex[:6]}"
    jobs = build_jobs(run, steps)
    objects = KubeObjects(core)
    selector = f"bench/run={run}"
    done: dict[str, float] = {}
    stop = threading.Event()
    rv = str(objects.list_page(JOBS, selector, namespace=NS)["metadata"]["resourceVersion"])

    def follow(rv: str) -> None:
        path = object_path(JOBS, None, NS)
        while not stop.is_set():
            for kind, job in core.watch(path, [("labelSelector", selector), ("resourceVersion", rv)], 30):
                if kind == "ERROR":
                    return
                rv = job["metadata"].get("resourceVersion", rv)
                conditions = (job.get("status") or {}).get("conditions") or []
                if any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conditions):
                    done.setdefault(job["metadata"]["name"], time.time())
                if stop.is_set():
                    return

    threading.Thread(target=follow, args=(rv,), daemon=True).start()
    t0 = time.time()
    for chunk in range(0, len(jobs), 200):
        doc = {"apiVersion": "v1", "kind": "List", "items": jobs[chunk : chunk + 200]}
        subprocess.run(
            [KUBECTL, f"--kubeconfig={kubeconfig}", "create", "-f", "-"],
            input=json.dumps(doc),
            text=True,
            capture_output=True,
            check=True,
        )
    created = time.time() - t0
    deadline = time.time() + 3600
    while len(done) < steps and time.time() < deadline:
        time.sleep(0.5)
    makespan = max(done.values()) - t0 if done else float("nan")
    stop.set()
    admission = admission_lags(objects, selector)
    subprocess.run(
        [KUBECTL, f"--kubeconfig={kubeconfig}", "delete", "jobs", "-n", NS, "-l", selector, "--wait=false"],
        capture_output=True,
    )
    return {
        "side": "kueue alone",
        "steps": steps,
        "finished": len(done),
        "created_all_s": round(created, 1),
        "makespan_s": round(makespan, 1),
        "steps_per_s": round(len(done) / makespan, 2),
        "created_to_admitted_s": admission,
    }


def admission_lags(objects: KubeObjects, selector: str) -> dict[str, float] | None:
    """Creation -> Admitted of the Workloads owned by the Jobs matching `selector` (Kueue copies no
    labels of ours onto Workloads: matched by owner name)."""
    created = {
        j["metadata"]["name"]: stamp(j["metadata"]["creationTimestamp"])
        for j in objects.list_objects(JOBS, label_selector=selector, namespace=NS)
    }
    lags = []
    for wl in objects.list_objects(KueueApi(objects).workloads(), namespace=NS):
        owners = [o["name"] for o in wl["metadata"].get("ownerReferences", []) if o["kind"] == "Job"]
        admitted = [c for c in (wl.get("status") or {}).get("conditions", []) if c["type"] == "Admitted"]
        made = created.get(owners[0]) if owners else None
        at = stamp(admitted[0]["lastTransitionTime"]) if admitted else None
        if made is not None and at is not None:
            lags.append(at - made)
    if not lags:
        return None
    return {"median": round(statistics.median(lags), 1), "max": round(max(lags), 1)}


def through_converged(steps: int, poll: float) -> dict[str, Any]:
    cp = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/controller_steps.py"),
            "--backend=kueue",
            f"--steps={steps}",
            f"--poll={poll}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(cp.stdout)
    return {
        "side": "converged",
        "steps": steps,
        "finished": result["finished"],
        "makespan_s": result["makespan_s"],
        "steps_per_s": result["steps_per_s"],
        "status_lag_s": result["status_lag_s"],
        "kube_calls_per_step": result["kube_calls_per_step"],
        "kube_calls": result["kube_calls_until_finished"],
        "cycle_cpu_s": result["cycle_cpu_s"],
        "process_cpu_s": result.get("process_cpu_s"),
        "status_writes_per_step": result.get("status_writes_per_step"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--poll", type=float, default=2.0)
    parser.add_argument("--kubeconfig", default="/var/lib/converged-local/kubeconfig")
    args = parser.parse_args()
    core = KubeCore(load_api_client(args.kubeconfig), field_manager="bench")
    results = []
    for _ in range(args.rounds):
        for side in ("alone", "converged"):
            load = round(os.getloadavg()[0], 2)
            if side == "alone":
                r = kueue_alone(core, args.steps, args.kubeconfig)
            else:
                r = through_converged(args.steps, args.poll)
            r["load_avg_1m_at_start"] = load
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            time.sleep(10)  # kwok and Kueue settle (deleted Jobs' pods go) before the next side
    alone = [r["makespan_s"] for r in results if r["side"] == "kueue alone"]
    ours = [r["makespan_s"] for r in results if r["side"] == "converged"]
    summary = {
        "steps": args.steps,
        "kueue_alone_makespan_s": alone,
        "converged_makespan_s": ours,
        "throughput_ratio": [round(a / c, 2) for a, c in zip(alone, ours, strict=True)],
        "runs": results,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
