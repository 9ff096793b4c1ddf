"""Kueue, out of cluster: CRDs applied server-side, no webhook configurations, default queues."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from . import kube, kubeconfig, pki, procs
from .layout import Layout
from .procs import Daemon

METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")  # fixed in Kueue's main.go when internal certs are off
FRAMEWORKS = ["batch/job", "jobset.x-k8s.io/jobset", "kubeflow.org/mpijob"]
REAL_QUEUE = "real"  # flavor, ClusterQueue and LocalQueue (namespace default) of the real node
REAL_NODE_LABEL = "converged.dev/node-kind"
# What the one real node can really give on this 2-core machine (kubelet.py), leaving room for the
# control plane and Slurm beside it.
REAL_QUOTA = {"cpu": "2", "memory": "8Gi"}
CLUSTER_QUEUES = ("default", REAL_QUEUE)
KUEUE_API = "kueue.x-k8s.io/v1beta2"  # Kueue's storage version since 0.16 (v1beta1 goes in 0.20)


def build_config(layout: Layout, cert_dir: Path) -> dict[str, object]:
    p = layout.ports
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta1",
        "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{p.kueue_health}"},
        "metrics": {"bindAddress": f"127.0.0.1:{p.kueue_metrics}"},
        "webhook": {"port": p.kueue_webhook, "host": "127.0.0.1", "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "clientConnection": {"qps": 200, "burst": 400},
        "integrations": {"frameworks": FRAMEWORKS},
        # the visibility API needs an APIService served in-cluster; we run outside
        "featureGates": {"VisibilityOnDemand": False},
    }


def build_queues() -> dict[str, object]:
    """Flavors and queues: `default` over the kwok nodes (see kwok.build_node), `real` over the real
    node (see kubelet.py), so work that must really run asks for it by queue name.

    In `default`, flavor `kwok` (3 CPU nodes) is tried first; a request for nvidia.com/gpu only fits
    `kwok-gpu`. `real` holds what the one real node can give: REAL_QUOTA.
    """
    toleration = {"key": "kwok.x-k8s.io/node", "operator": "Equal", "value": "fake", "effect": "NoSchedule"}

    def flavor(name: str, labels: dict[str, str], fake: bool = True) -> dict[str, object]:
        spec: dict[str, object] = {"nodeLabels": labels}
        if fake:
            spec["tolerations"] = [toleration]
        return {
            "apiVersion": KUEUE_API,
            "kind": "ResourceFlavor",
            "metadata": {"name": name},
            "spec": spec,
        }

    def quota(name: str, cpu: str, mem: str, gpu: str) -> dict[str, object]:
        return {
            "name": name,
            "resources": [
                {"name": "cpu", "nominalQuota": cpu},
                {"name": "memory", "nominalQuota": mem},
                {"name": "nvidia.com/gpu", "nominalQuota": gpu},
            ],
        }

    items: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kueue-system"}},
        flavor("kwok", {"converged.dev/node-kind": "kwok"}),
        flavor("kwok-gpu", {"converged.dev/node-kind": "kwok", "converged.dev/gpu-model": "a100"}),
        {
            "apiVersion": KUEUE_API,
            "kind": "ClusterQueue",
            "metadata": {"name": "default"},
            "spec": {
                "namespaceSelector": {},
                "queueingStrategy": "BestEffortFIFO",
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                        "flavors": [quota("kwok", "24", "96Gi", "0"), quota("kwok-gpu", "8", "32Gi", "2")],
                    }
                ],
            },
        },
        {
            "apiVersion": KUEUE_API,
            "kind": "LocalQueue",
            "metadata": {"name": "default", "namespace": "default"},
            "spec": {"clusterQueue": "default"},
        },
        flavor(REAL_QUEUE, {REAL_NODE_LABEL: "real"}, fake=False),
        {
            "apiVersion": KUEUE_API,
            "kind": "ClusterQueue",
            "metadata": {"name": REAL_QUEUE},
            "spec": {
                "namespaceSelector": {},
                "queueingStrategy": "BestEffortFIFO",
                "resourceGroups": [
                    {
                        "coveredResources": list(REAL_QUOTA),
                        "flavors": [
                            {
                                "name": REAL_QUEUE,
                                "resources": [{"name": r, "nominalQuota": q} for r, q in REAL_QUOTA.items()],
                            }
                        ],
                    }
                ],
            },
        },
        {
            "apiVersion": KUEUE_API,
            "kind": "LocalQueue",
            "metadata": {"name": REAL_QUEUE, "namespace": "default"},
            "spec": {"clusterQueue": REAL_QUEUE},
        },
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def _install_certs(layout: Layout, cert_dir: Path) -> None:
    for d in (cert_dir, METRICS_CERT_DIR):
        d.mkdir(parents=True, exist_ok=True)
        for src, dst in (("webhook.crt", "tls.crt"), ("webhook.key", "tls.key")):
            if not (d / dst).exists() or (d / dst).read_bytes() != (layout.pki / src).read_bytes():
                shutil.copyfile(layout.pki / src, d / dst)


def _daemon(layout: Layout, config: Path) -> Daemon:
    return Daemon(
        "kueue",
        [str(layout.bin("kueue", "kueue")), f"--config={config}", "--zap-log-level=info"],
        env={"KUBECONFIG": str(kubeconfig.for_identity(layout, "kueue"))},
    )


def ready(layout: Layout) -> bool:
    url = f"http://127.0.0.1:{layout.ports.kueue_health}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def up(layout: Layout) -> None:
    work = layout.component_dir("kueue")
    work.mkdir(parents=True, exist_ok=True)
    pki.ensure_all(layout.pki)
    # operator CRDs first: Kueue enables an integration only if its CRD is served when it starts
    kube.apply_crds(layout, layout.operator_crds)
    kube.apply_crds(layout, layout.cached("kueue", "crds"))
    cert_dir = work / "certs"
    _install_certs(layout, cert_dir)
    config = work / "config.json"
    text = json.dumps(build_config(layout, cert_dir), indent=2) + "\n"
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
        procs.stop(layout, "kueue")  # restart on a changed configuration
    procs.start(layout, _daemon(layout, config))
    procs.wait_until("kueue", lambda: ready(layout), 90, procs.log_path(layout, "kueue"))
    kube.kubectl(
        layout,
        "apply",
        "--server-side",
        "--field-manager=converged-local",
        "-f",
        "-",
        input=json.dumps(build_queues()),
    )
    procs.wait_until(
        "ClusterQueues default and real Active",
        lambda: _cq_active(layout),
        60,
        procs.log_path(layout, "kueue"),
    )


def _cq_active(layout: Layout, names: tuple[str, ...] = CLUSTER_QUEUES) -> bool:
    listed = json.loads(kube.kubectl(layout, "get", "clusterqueues", "-o", "json"))["items"]
    active = {
        cq["metadata"]["name"]
        for cq in listed
        if any(
            c["type"] == "Active" and c["status"] == "True"
            for c in cq.get("status", {}).get("conditions", [])
        )
    }
    return set(names) <= active


def down(layout: Layout) -> None:
    procs.stop(layout, "kueue")


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    good = ready(layout)
    detail = "readyz ok" if good else "readyz failing"
    if good:
        try:
            active = _cq_active(layout)
        except procs.ClusterError:
            active = False
        good, detail = (
            active,
            (
                f"ClusterQueues {', '.join(CLUSTER_QUEUES)} Active"
                if active
                else f"ClusterQueues {', '.join(CLUSTER_QUEUES)} not all Active"
            ),
        )
    return [("kueue", good, detail)]
