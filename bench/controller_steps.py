"""Benchmark (issues 4 and 5): the controller with many in-flight steps on the local cluster.

`--backend slurm`: N WorkflowSteps for the local Slurm (they run `true`; the 3 nodes run 12 at a time,
the rest pend). `--backend kueue`: N Job steps through Kueue onto the kwok nodes (1 CPU each; the
queue admits 32 at a time). The controller runs embedded in this process; measured:
- Slurm queries per poll cycle (target: exactly 1 per cluster, whatever N);
- status lag: from a job's end (Slurm's end time, 1 s resolution) to its WorkflowStep showing the
  terminal phase, seen through a WATCH (target: <= poll interval + 1 s);
- controller CPU per cycle (observing + reconciling every step), the whole process's CPU (informer threads
  included), and Kubernetes API calls per step.

- creation -> Succeeded per step (median, p99) and steps per second overall;
- creation -> Slurm submission per step and the spread of the submissions (new work must not wait);
- how long each Slurm job listing took, and which code tree ran (a before/after comparison runs two).

Usage: .venv/bin/python bench/controller_steps.py [--backend slurm|kueue] [--steps 1000] [--poll 2]
Runs on the local cluster as `make up` leaves it: Kueue steps in namespace `default` (its LocalQueue
`default` is the kwok nodes' ClusterQueue), Slurm steps in namespace `alice` on SlurmCluster `hpc1` (which
runs them as Slurm user alice). `--namespace` and `--slurm-cluster` pick others.
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

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import Backend
from converged_bridge.controller import runner
from converged_bridge.controller.runner import Controller
from converged_bridge.controller.settings import ControllerSettings
from converged_bridge.kube.core import KubeCore, load_api_client
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.kube.steps import WorkflowSteps
from converged_bridge.slurm.connect import build_transport
from converged_bridge.slurm.jobs import COMMENT_PREFIX, SlurmJob
from converged_bridge.slurm.transport import SlurmTransport, Submission
from converged_bridge.wire import CONTROLLER_LABEL, EMBEDDED, FINALIZER, RUN_LABEL

SLURM_IMAGE = os.environ.get("CONVERGED_SLURM_IMAGE", "/var/lib/converged-local/images/step.sif")
NAMESPACES = {"kueue": "default", "slurm": "alice"}  # as `make up` leaves the site (see the docstring)
KUBECTL = "/var/lib/converged-local/bin/kubectl"


def step_spec(
    backend: str, run: str, i: int, workdir: str, cluster: str = "hpc1", image: str = SLURM_IMAGE
) -> dict[str, Any]:
    common: dict[str, Any] = {
        "workflow": {"runId": run, "rule": "bench", "jobId": i},
        "backend": backend,
        "command": ["true"],
        "resources": {"cpus": 1, "memMiB": 50, "runtimeMinutes": 5},
    }
    if backend == "slurm":
        return {**common, "slurm": {"cluster": cluster}, "workingDir": workdir, "image": image}
    return {**common, "kueue": {"localQueue": "default"}, "image": "registry.invalid/bench:1"}


class TimedTransport:
    """A Slurm transport that times each job listing and notes when each step was submitted."""

    def __init__(self, inner: SlurmTransport) -> None:
        self._inner = inner
        self.listing_seconds: list[float] = []
        self.submitted_at: dict[str, float] = {}  # step UID -> wall time sbatch answered

    def server_version(self) -> str:
        return self._inner.server_version()

    def submit(self, submission: Submission) -> int:
        job_id = self._inner.submit(submission)
        self.submitted_at[submission.options.comment.removeprefix(COMMENT_PREFIX)] = time.time()
        return job_id

    def list_jobs(self) -> list[SlurmJob]:
        started = time.monotonic()
        jobs = self._inner.list_jobs()
        self.listing_seconds.append(time.monotonic() - started)
        return jobs

    def cancel(self, job_id: int, user: str) -> None:
        self._inner.cancel(job_id, user)

    def close(self) -> None:
        self._inner.close()


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 2),
        "p99": round(pct(values, 99), 2),
        "max": round(max(values), 2),
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--backend", choices=["slurm", "kueue"], default="slurm")
    parser.add_argument("--poll", type=float, default=2.0)
    parser.add_argument("--kubeconfig", default="/var/lib/converged-local/kubeconfig")
    parser.add_argument("--workdir", default="/var/lib/converged-local/shared/bench-slurm")
    parser.add_argument("--per-step", help="write each step's times (JSON lines) to this file")
    parser.add_argument("--namespace", help="default: `default` for kueue, `alice` for slurm")
    parser.add_argument("--slurm-cluster", default="hpc1", help="a SlurmCluster mapping the namespace")
    parser.add_argument("--slurm-image", default=SLURM_IMAGE, help="the Slurm steps' image (Apptainer SIF)")
    args = parser.parse_args()
    ns = args.namespace or NAMESPACES[args.backend]

    run = f"bench-{uuid.uuid4().hex[:6]}"
    selector = f"{CONTROLLER_LABEL}={EMBEDDED},{RUN_LABEL}={run}"
    load_before = os.getloadavg()[0]
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    Path(args.workdir).chmod(0o1777)
    api = load_api_client(args.kubeconfig)
    watcher_kube = WorkflowSteps(KubeObjects(KubeCore(api, field_manager="bench")))
    seen: dict[str, float] = {}  # step name -> wall time its terminal phase was first seen
    created_at: dict[str, float] = {}
    ends: dict[str, float] = {}
    names: dict[str, str] = {}  # step UID -> name
    stop = threading.Event()

    def note(obj: dict[str, Any]) -> None:
        name = obj["metadata"].get("name", "")
        status = obj.get("status") or {}
        if name.startswith(run):
            names[obj["metadata"]["uid"]] = name
        if name.startswith(run) and status.get("phase") in ("Succeeded", "Failed"):
            seen.setdefault(name, time.time())
            if status.get("completionTime"):
                ends[name] = datetime.fromisoformat(status["completionTime"]).timestamp()

    def watch() -> None:
        while not stop.is_set():
            items, rv = watcher_kube.list_steps(ns)  # (re)list: also after an expired watch (410)
            for obj in items:
                note(obj)
            expired = False
            while not stop.is_set() and not expired:
                for kind, obj in watcher_kube.watch_steps(rv, ns, timeout_seconds=30):
                    if kind == "ERROR":
                        expired = True
                        break
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if kind != "BOOKMARK":
                        note(obj)
                    if stop.is_set():
                        return

    watch_thread = threading.Thread(target=watch, daemon=True)
    watch_thread.start()

    kube = KubeCore(api, field_manager="converged-controller")
    timed: list[TimedTransport] = []

    def transport(name: str, spec: SlurmClusterSpec, read: Any) -> SlurmTransport:
        timed.append(TimedTransport(build_transport(name, spec, read)))
        return timed[-1]

    controller = Controller.connect(
        kube,
        # this run's steps only, marked as an embedded controller's: the site's deployed controller leaves
        # them alone (it drives every step without the mark), as it does a plugin run's with an embedded one
        ControllerSettings(poll_interval=args.poll, namespace=ns, label_selector=selector),
        transport_factory=transport,
    )
    controller.start()
    t0, cpu0 = time.time(), time.process_time()
    items: list[dict[str, Any]] = []
    for i in range(args.steps):
        items.append(
            {
                "apiVersion": "converged.dev/v1alpha1",
                "kind": "WorkflowStep",
                "metadata": {
                    "name": f"{run}-{i}",
                    "namespace": ns,
                    "labels": {RUN_LABEL: run, CONTROLLER_LABEL: EMBEDDED},
                    "finalizers": [FINALIZER],  # as the plugin creates its steps
                },
                "spec": step_spec(args.backend, run, i, args.workdir, args.slurm_cluster, args.slurm_image),
            }
        )
    for item in items:
        created_at[item["metadata"]["name"]] = time.time()
    for chunk in range(0, len(items), 200):
        doc = {"apiVersion": "v1", "kind": "List", "items": items[chunk : chunk + 200]}
        subprocess.run(
            ["/var/lib/converged-local/bin/kubectl", f"--kubeconfig={args.kubeconfig}", "create", "-f", "-"],
            input=json.dumps(doc),
            text=True,
            capture_output=True,
            check=True,
        )
    created = time.time() - t0
    print(f"created {args.steps} WorkflowSteps in {created:.1f}s", file=sys.stderr)
    start_cycles, start_queries = controller.cycles, controller.queries(Backend.SLURM)
    deadline = time.time() + 3600
    while len(seen) < args.steps and time.time() < deadline:
        time.sleep(1)
        print(f"\r{len(seen)}/{args.steps} finished", end="", file=sys.stderr)
    print(file=sys.stderr)
    makespan = time.time() - t0
    process_cpu = time.process_time() - cpu0  # the controller's threads (informers included) and the bench's
    cycles = controller.cycles - start_cycles
    queries = controller.queries(Backend.SLURM) - start_queries
    cpu = controller.cycle_cpu_seconds[-cycles:] if cycles else [0.0]
    calls = dict(kube.calls)
    stop.set()
    lags = [seen[n] - ends[n] for n in seen if n in ends]
    to_done = [seen[n] - created_at[n] for n in seen if n in created_at]
    submitted = {names[u]: t for tr in timed for u, t in tr.submitted_at.items() if u in names}
    to_submitted = [t - created_at[n] for n, t in submitted.items() if n in created_at]
    listed = [s for tr in timed for s in tr.listing_seconds]
    result: dict[str, Any] = {
        "steps": args.steps,
        "poll_interval_s": args.poll,
        "finished": len(seen),
        "backend": args.backend,
        "controller_code": runner.__file__,
        "load_avg_1m": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "makespan_s": round(makespan, 1),
        "steps_per_s": round(len(seen) / makespan, 1),
        "created_to_succeeded_s": {
            "median": round(statistics.median(to_done), 2),
            "p99": round(pct(to_done, 99), 2),
        }
        if to_done
        else None,
        "created_to_submitted_s": spread(to_submitted),
        "submissions_spread_s": round(max(submitted.values()) - min(submitted.values()), 1)
        if submitted
        else None,
        "poll_cycles": cycles,
        "slurm_queries": queries,
        "slurm_queries_per_cycle": round(queries / cycles, 3) if cycles else None,
        "status_lag_s": {
            "median": round(statistics.median(lags), 2),
            "p99": round(pct(lags, 99), 2),
            "max": round(max(lags), 2),
        }
        if lags
        else None,
        "slurm_listing_s": spread(listed),
        "cycle_cpu_s": {
            "median": round(statistics.median(cpu), 4),
            "p99": round(pct(cpu, 99), 4),
            "max": round(max(cpu), 4),
        },
        "process_cpu_s": round(process_cpu, 1),
        "kube_calls_until_finished": calls,
        "kube_calls_per_step": round(sum(calls.values()) / args.steps, 2),
        "status_writes_per_step": round(calls.get("patch-status", 0) / args.steps, 2),
    }
    print(json.dumps(result, indent=2), flush=True)
    if args.per_step:
        with open(args.per_step, "w") as f:
            for n in sorted(created_at):
                times = {"created": created_at[n], "submitted": submitted.get(n), "end": ends.get(n)}
                f.write(json.dumps({"step": n, **times, "seen_terminal": seen.get(n)}) + "\n")
    # delete while the controller still runs: it releases each step's finalizer
    subprocess.run(
        [
            KUBECTL,
            f"--kubeconfig={args.kubeconfig}",
            "delete",
            "wfs",
            "-n",
            ns,
            "-l",
            selector,
            "--timeout=600s",
        ],
        capture_output=True,
    )
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
