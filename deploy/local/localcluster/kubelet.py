"""The real node: the pinned kubelet on our containerd, joined to the local control plane.

Node `real-node-0` (label converged.dev/node-kind=real) registers with a client certificate
O=system:nodes,CN=system:node:real-node-0 (the API server authorizes it with the Node authorizer)
and serves its API on 127.0.0.1 with a certificate of our CA, so `kubectl logs/exec` work.
cgroup v1 with the cgroupfs driver; its state lives in layout.component_dir("kubelet").
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from . import containerd, kube, kubeconfig, mounts, pki, probes, procs
from .layout import Layout
from .procs import ClusterError, Daemon

NODE = "real-node-0"
NODE_KIND_LABEL = "converged.dev/node-kind"
NODE_LABELS = {NODE_KIND_LABEL: "real"}
NODE_ADDRESSES = [{"type": "InternalIP", "address": "127.0.0.1"}]
CLIENT_IDENTITY = f"kubelet-{NODE}"
SERVING_IDENTITY = f"kubelet-{NODE}-serving"
CGROUP_ROOTS = Path("/sys/fs/cgroup")
MAX_PODS = 32
DRAIN_GRACE_S = 5


def root_dir(layout: Layout) -> Path:
    return layout.component_dir("kubelet")


def build_config(layout: Layout) -> dict[str, object]:
    """KubeletConfiguration for one node on loopback, cgroup v1 + cgroupfs, no swap check."""
    k = layout.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "127.0.0.1",
        "port": layout.ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": layout.ports.kubelet_healthz,
        "tlsCertFile": str(k / f"{SERVING_IDENTITY}.crt"),
        "tlsPrivateKeyFile": str(k / f"{SERVING_IDENTITY}.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(k / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": containerd.endpoint(layout),
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,  # this host mounts cgroup v1 controllers; 1.35+ refuses them by default
        "failSwapOn": False,
        "podLogsDir": str(root_dir(layout) / "pod-logs"),
        "clusterDomain": "cluster.local",
        # CoreDNS on the host's bridge address (coredns.py): pods of one JobSet or MPIJob resolve each other
        "clusterDNS": [containerd.HOST_ADDRESS],
        "resolvConf": "/etc/resolv.conf",
        "maxPods": MAX_PODS,
        "serializeImagePulls": False,
        # the step and pause images exist only locally (imported, never pullable): never collect them
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "5%", "imagefs.available": "5%"},
        "nodeStatusReportFrequency": "1m",
        "staticPodPath": "",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "shutdownGracePeriod": "0s",
        # KUBE-FIREWALL and friends serve kube-proxy, which this node does not run: leave the host's
        # iptables alone
        "makeIPTablesUtilChains": False,
    }


def _ensure_certs(layout: Layout) -> None:
    pki.cert(layout.pki, CLIENT_IDENTITY, f"/O=system:nodes/CN=system:node:{NODE}")
    pki.cert(
        layout.pki,
        SERVING_IDENTITY,
        f"/CN={NODE}",
        sans=["IP:127.0.0.1", f"DNS:{NODE}", "DNS:localhost"],
        server=True,
    )


def _daemon(layout: Layout, config: Path) -> Daemon:
    labels = ",".join(f"{k}={v}" for k, v in NODE_LABELS.items())
    return Daemon(
        "kubelet",
        [
            str(layout.bin("kubernetes", "kubelet")),
            f"--config={config}",
            f"--kubeconfig={kubeconfig.for_identity(layout, CLIENT_IDENTITY)}",
            f"--root-dir={root_dir(layout)}",
            f"--hostname-override={NODE}",
            "--node-ip=127.0.0.1",
            f"--node-labels={labels}",
            "--v=1",
        ],
    )


def healthz(layout: Layout) -> bool:
    return probes.ok_plain(f"http://127.0.0.1:{layout.ports.kubelet_healthz}/healthz")


def read_node(layout: Layout) -> dict[str, object] | None:
    out = kube.kubectl(layout, "get", "node", NODE, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def node_ready(node: dict[str, object] | None) -> bool:
    if not node:
        return False
    status = node.get("status")
    conditions = status.get("conditions", []) if isinstance(status, dict) else []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def node_addresses(node: dict[str, object] | None) -> list[dict[str, str]]:
    status = node.get("status") if node else None
    return list(status.get("addresses", [])) if isinstance(status, dict) else []


def _ensure_addresses(layout: Layout) -> None:
    """Give the Node its address, 127.0.0.1, as its status.

    kubelet refuses to report a loopback --node-ip ("nodeIP can't be loopback address") and then
    reports no address at all, so the API server could not reach it for logs/exec. Everything here
    stays on loopback, so we set the address ourselves; kubelet patches only the fields it sets and
    leaves this one alone. InternalIP only: the API server would try a Hostname address first.
    """
    if node_addresses(read_node(layout)) == NODE_ADDRESSES:
        return
    patch = json.dumps({"status": {"addresses": NODE_ADDRESSES}})
    kube.kubectl(layout, "patch", "node", NODE, "--subresource=status", "--type=merge", "-p", patch)


CRI_ATTEMPTS = 5
CRI_NOT_READY = "server is not initialized yet"


def _log_tail(log: Path, size: int = 4096) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, log.stat().st_size - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def up(layout: Layout) -> None:
    _ensure_certs(layout)
    root = root_dir(layout)
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.json"
    text = json.dumps(build_config(layout), indent=2) + "\n"
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
        procs.stop(layout, "kubelet")  # restart on a changed configuration
    log = procs.log_path(layout, "kubelet")

    def alive(check: bool) -> bool:
        if procs.running(layout, "kubelet") is None:
            raise procs.Exited(f"kubelet exited; see {log}")
        return check

    for attempt in range(1, CRI_ATTEMPTS + 1):
        try:
            procs.start(layout, _daemon(layout, config))
            procs.wait_until("kubelet healthz", lambda: alive(healthz(layout)), 90, log)
            break
        except ClusterError:
            # containerd answers before its CRI service has initialized ("server is not initialized
            # yet"), and the kubelet exits at once on that: start it again, a few seconds later
            if attempt == CRI_ATTEMPTS or CRI_NOT_READY not in _log_tail(log):
                raise
            procs.stop(layout, "kubelet")
            time.sleep(3)
    procs.wait_until(f"node {NODE} registered", lambda: alive(read_node(layout) is not None), 60, log)
    _ensure_addresses(layout)
    procs.wait_until(f"node {NODE} Ready", lambda: alive(node_ready(read_node(layout))), 120, log)
    # labels given at registration are not re-applied to a Node that already exists; down cordons it
    kube.kubectl(layout, "label", "node", NODE, "--overwrite", *(f"{k}={v}" for k, v in NODE_LABELS.items()))
    kube.kubectl(layout, "uncordon", NODE)


def _pods_on_node(layout: Layout) -> list[tuple[str, str]]:
    out = kube.kubectl(
        layout, "get", "pods", "-A", f"--field-selector=spec.nodeName={NODE}", "-o", "json", check=False
    )
    items = json.loads(out)["items"] if out.strip() else []
    return [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in items]


def _drain(layout: Layout) -> None:
    """Cordon the node and delete its pods while the kubelet still runs, so it stops them properly
    (containers, then sandbox: network teardown, volume unmounts). Bounded; the sweep follows."""
    if not kube.apiserver_ready(layout) or read_node(layout) is None:
        return
    kube.kubectl(layout, "cordon", NODE, check=False)
    pods = _pods_on_node(layout)
    for ns, name in pods:
        kube.kubectl(
            layout,
            "delete",
            "pod",
            "-n",
            ns,
            name,
            f"--grace-period={DRAIN_GRACE_S}",
            "--wait=false",
            check=False,
        )
    if pods and procs.running(layout, "kubelet") is not None:
        with contextlib.suppress(ClusterError):
            procs.wait_until("pods to leave the real node", lambda: not _pods_on_node(layout), 30)


def _kubepods_cgroups() -> list[Path]:
    """The QoS cgroups kubelet made (cgroupfs driver, cgroup root /), deepest first."""
    found: list[Path] = []
    for controller in sorted(CGROUP_ROOTS.iterdir()) if CGROUP_ROOTS.is_dir() else []:
        top = controller / "kubepods"
        if top.is_dir():
            found += sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
            found.append(top)
    return found


def _remove_cgroups() -> None:
    for _ in range(20):
        left = _kubepods_cgroups()
        for cg in left:
            with contextlib.suppress(OSError):  # busy until its last process is gone
                cg.rmdir()
        if not _kubepods_cgroups():
            return
        time.sleep(0.1)


def down(layout: Layout) -> None:
    """Drain, stop the kubelet, remove whatever containers are left, unmount its volumes."""
    with contextlib.suppress(ClusterError):
        _drain(layout)
    procs.stop(layout, "kubelet")
    containerd.remove_all_containers(layout)
    mounts.unmount_under(root_dir(layout))
    _remove_cgroups()


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    if procs.running(layout, "kubelet") is None:
        return [("kubelet", False, "not running")]
    if not healthz(layout):
        return [("kubelet", False, "healthz failing")]
    try:
        node = read_node(layout)
    except ClusterError as e:
        return [("kubelet", False, f"node unknown: {e}")]
    if not node_ready(node):
        return [("kubelet", False, f"node {NODE} not Ready")]
    if node_addresses(node) != NODE_ADDRESSES:
        return [("kubelet", False, f"node {NODE} has no address 127.0.0.1 (logs/exec cannot reach it)")]
    return [("kubelet", True, f"healthz ok, node {NODE} Ready at 127.0.0.1:{layout.ports.kubelet}")]
