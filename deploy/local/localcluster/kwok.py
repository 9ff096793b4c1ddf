"""kwok: fake Nodes that schedule and complete pods at scale (they never run a command)."""

from __future__ import annotations

import json

from . import kube, kubeconfig, procs
from .layout import Layout
from .procs import Daemon

NODE_COUNT = 4
GPU_NODE = 3  # index of the node that carries GPUs
NODE_ANNOTATION = "kwok.x-k8s.io/node"


def build_node(index: int) -> dict[str, object]:
    """One fake Node: 8 CPU / 32 Gi; the GPU node also has nvidia.com/gpu: 2 (model a100)."""
    name = f"kwok-node-{index}"
    gpu = index == GPU_NODE
    capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        "converged.dev/node-kind": "kwok",
    }
    if gpu:
        capacity["nvidia.com/gpu"] = "2"
        labels["converged.dev/gpu-model"] = "a100"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {NODE_ANNOTATION: "fake"}},
        "spec": {"taints": [{"key": NODE_ANNOTATION, "value": "fake", "effect": "NoSchedule"}]},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
        },
    }


def build_nodes() -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "List", "items": [build_node(i) for i in range(NODE_COUNT)]}


def _daemon(layout: Layout) -> Daemon:
    stages = layout.cached("kwok", "stages")
    argv = [
        str(layout.bin("kwok", "kwok")),
        f"--kubeconfig={kubeconfig.for_identity(layout, 'kwok')}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
        "--disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom",
        "--cidr=10.244.0.1/16",
        "--node-ip=127.0.0.1",
        f"--server-address=127.0.0.1:{layout.ports.kwok_server}",
        "--node-lease-duration-seconds=40",
    ]
    for stage in sorted(stages.glob("*.yaml")):
        argv += ["--config", str(stage)]
    return Daemon("kwok", argv)


def _nodes_ready(layout: Layout) -> bool:
    out = kube.kubectl(layout, "get", "nodes", "-l", "type=kwok", "-o", "json")
    items = json.loads(out)["items"]
    ready = [
        n
        for n in items
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
    ]
    return len(ready) == NODE_COUNT


def up(layout: Layout) -> None:
    procs.start(layout, _daemon(layout))
    kube.kubectl(
        layout,
        "apply",
        "--server-side",
        # while kwok was down the node-lifecycle controller tainted its nodes unreachable and took
        # .spec.taints; the nodes are ours: take it back (it taints them again if they stay unreachable)
        "--force-conflicts",
        "--field-manager=converged-local",
        "-f",
        "-",
        input=json.dumps(build_nodes()),
    )
    procs.wait_until("kwok nodes Ready", lambda: _nodes_ready(layout), 60, procs.log_path(layout, "kwok"))


def down(layout: Layout) -> None:
    procs.stop(layout, "kwok")


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    alive = procs.running(layout, "kwok") is not None
    try:
        ready = alive and _nodes_ready(layout)
    except procs.ClusterError:
        ready = False
    detail = f"{NODE_COUNT} nodes Ready" if ready else ("process down" if not alive else "nodes not Ready")
    return [("kwok", ready, detail)]
