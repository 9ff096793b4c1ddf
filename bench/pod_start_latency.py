# mypy: disable-error-code="no-untyped-call"
"""Pod start latency on the local cluster's real node, against the Kubernetes SLO (p99 <= 5 s).

Creates pods one after another on real-node-0 from the step image (already on the node, so no image
pull, as in the SLO's definition) and measures, on the client's monotonic clock, from the create
call to the watch event that shows the pod Running. With --via-kueue it creates suspended Jobs on
Kueue's `real` queue instead and measures Job created -> pod Running (admission included).

    eval "$(deploy/local/cluster env)"
    .venv/bin/python bench/pod_start_latency.py --samples 10 [--via-kueue]

Bounded: each sample gives up after --timeout seconds; every object it creates is deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass

from kubernetes import client, config, watch

NS = "default"
REAL_NODE_SELECTOR = {"converged.dev/node-kind": "real"}
SLO_P99_S = 5.0


@dataclass(frozen=True)
class Summary:
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def p90(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def build_pod_spec(image: str) -> client.V1PodSpec:
    requests = {"cpu": "100m", "memory": "64Mi"}
    return client.V1PodSpec(
        restart_policy="Never",
        node_selector=REAL_NODE_SELECTOR,
        termination_grace_period_seconds=1,
        containers=[
            client.V1Container(
                name="main",
                image=image,
                image_pull_policy="Never",
                command=["sleep", "60"],
                resources=client.V1ResourceRequirements(requests=requests, limits=requests),
            )
        ],
    )


def wait_running(core: client.CoreV1Api, selector: str, timeout: float) -> float | None:
    """Monotonic time at which a pod matching `selector` is first seen Running, or None."""
    w = watch.Watch()
    deadline = time.monotonic() + timeout
    try:
        for event in w.stream(
            core.list_namespaced_pod, NS, label_selector=selector, timeout_seconds=int(timeout) + 1
        ):
            pod = event["object"]
            if pod.status and pod.status.phase == "Running":
                return time.monotonic()
            if time.monotonic() > deadline:
                return None
    finally:
        w.stop()
    return None


def sample_pod(api: client.ApiClient, image: str, timeout: float) -> float | None:
    core = client.CoreV1Api(api)
    name = f"bench-pod-{uuid.uuid4().hex[:8]}"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"bench": name}), spec=build_pod_spec(image)
    )
    start = time.monotonic()
    core.create_namespaced_pod(NS, pod)
    try:
        running = wait_running(core, f"bench={name}", timeout)
    finally:
        core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
    return None if running is None else running - start


def sample_job(api: client.ApiClient, image: str, timeout: float) -> float | None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    name = f"bench-job-{uuid.uuid4().hex[:8]}"
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name=name, labels={"kueue.x-k8s.io/queue-name": "real"}),
        spec=client.V1JobSpec(
            suspend=True,
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"bench": name}), spec=build_pod_spec(image)
            ),
        ),
    )
    start = time.monotonic()
    batch.create_namespaced_job(NS, job)
    try:
        running = wait_running(core, f"bench={name}", timeout)
    finally:
        batch.delete_namespaced_job(name, NS, propagation_policy="Background", grace_period_seconds=0)
    return None if running is None else running - start


def wait_node_idle(api: client.ApiClient, timeout: float = 60) -> None:
    """Wait until no bench pod is left on the node, so samples do not overlap."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = core.list_namespaced_pod(NS, label_selector="bench").items
        if not left:
            return
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per sample")
    parser.add_argument("--via-kueue", action="store_true", help="suspended Jobs on the `real` queue")
    parser.add_argument("--image", default=os.environ.get("CONVERGED_STEP_IMAGE", ""))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.image:
        parser.error('no --image and no CONVERGED_STEP_IMAGE (eval "$(deploy/local/cluster env)")')
    api = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"), persist_config=False)
    sample = sample_job if args.via_kueue else sample_pod
    took: list[float] = []
    failed = 0
    for _ in range(args.samples):
        wait_node_idle(api)
        latency = sample(api, args.image, args.timeout)
        if latency is None:
            failed += 1
        else:
            took.append(latency)
    wait_node_idle(api)
    if not took:
        print("no pod reached Running", file=sys.stderr)
        return 1
    s = Summary(took)
    what = "Job created -> pod Running (via Kueue)" if args.via_kueue else "pod created -> Running"
    if args.json:
        print(json.dumps({"what": what, "samples": took, "median": s.median, "p90": s.p90, "max": s.max}))
    else:
        print(f"{what}: {len(took)} samples, {failed} timed out")
        print(f"  median {s.median:.2f}s  p90 {s.p90:.2f}s  max {s.max:.2f}s  (SLO: p99 <= {SLO_P99_S:.0f}s)")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
