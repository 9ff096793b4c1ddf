"""The Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from . import kubeconfig, pki, probes, procs
from .layout import HERE, Layout
from .procs import Daemon

SERVICE_RANGE = "10.96.0.0/16"
REPO_CRDS = HERE.parent.parent / "crds"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def link_binaries(layout: Layout) -> None:
    """Put the pinned binaries on one directory (layout.root/bin) that `env` adds to PATH."""
    bindir = layout.root / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    wanted = {
        "kubectl": layout.bin("kubernetes", "kubectl"),
        "etcd": layout.bin("etcd", "etcd"),
        "kueue": layout.bin("kueue", "kueue"),
        "kwok": layout.bin("kwok", "kwok"),
    }
    for name, target in wanted.items():
        link = bindir / name
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(target)


def _etcd(layout: Layout) -> Daemon:
    p = layout.ports
    data = layout.component_dir("etcd")
    return Daemon(
        "etcd",
        [
            str(layout.bin("etcd", "etcd")),
            "--name=local",
            f"--data-dir={data}",
            f"--listen-client-urls=http://127.0.0.1:{p.etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{p.etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
            f"--initial-cluster=local=http://127.0.0.1:{p.etcd_peer}",
            # a throw-away test cluster: trade durability for speed on slow disks
            "--unsafe-no-fsync",
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ],
    )


def _apiserver(layout: Layout) -> Daemon:
    k = layout.pki
    return Daemon(
        "kube-apiserver",
        [
            str(layout.bin("kubernetes", "kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{layout.ports.etcd_client}",
            # on every address: loopback for the host's clients, the pods' bridge for the daemon's pods
            "--bind-address=0.0.0.0",
            # the `kubernetes` Service's endpoint; 1.37 refuses a loopback address there
            f"--advertise-address={pki.HOST_BRIDGE_IP}",
            f"--secure-port={layout.ports.apiserver}",
            f"--tls-cert-file={k / 'apiserver.crt'}",
            f"--tls-private-key-file={k / 'apiserver.key'}",
            f"--client-ca-file={k / 'ca.crt'}",
            f"--kubelet-client-certificate={k / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={k / 'apiserver-kubelet-client.key'}",
            f"--service-account-key-file={k / 'sa.pub'}",
            f"--service-account-signing-key-file={k / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=true",
            "--profiling=false",
            "--max-requests-inflight=800",
            "--max-mutating-requests-inflight=400",
        ],
    )


def _controller_manager(layout: Layout) -> Daemon:
    k = layout.pki
    kc = kubeconfig.for_identity(layout, "controller-manager")
    return Daemon(
        "kube-controller-manager",
        [
            str(layout.bin("kubernetes", "kube-controller-manager")),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={layout.ports.controller_manager}",
            f"--service-account-private-key-file={k / 'sa.key'}",
            f"--root-ca-file={k / 'ca.crt'}",
            f"--cluster-signing-cert-file={k / 'ca.crt'}",
            f"--cluster-signing-key-file={k / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--concurrent-job-syncs=20",
            "--concurrent-gc-syncs=20",
        ],
    )


def _scheduler(layout: Layout) -> Daemon:
    kc = kubeconfig.for_identity(layout, "scheduler")
    return Daemon(
        "kube-scheduler",
        [
            str(layout.bin("kubernetes", "kube-scheduler")),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={layout.ports.scheduler}",
            "--leader-elect=false",
        ],
    )


def apiserver_url(layout: Layout, path: str) -> str:
    return f"https://127.0.0.1:{layout.ports.apiserver}{path}"


def apiserver_ready(layout: Layout) -> bool:
    k = layout.pki
    return probes.ok(
        apiserver_url(layout, "/readyz"), ca=k / "ca.crt", cert=k / "admin.crt", key=k / "admin.key"
    )


def kubectl(layout: Layout, *args: str, input: str | None = None, check: bool = True) -> str:
    """Run the pinned kubectl as the local admin; returns stdout."""
    cp = procs.run(
        [str(layout.bin("kubernetes", "kubectl")), f"--kubeconfig={layout.kubeconfig}", *args],
        input=input,
        check=check,
    )
    return cp.stdout


def apply_crds(layout: Layout, path: Path) -> None:
    """Apply the CRDs in `path` server-side (some are large) and wait until they are served."""
    kubectl(
        layout,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=converged-local",
        "-f",
        str(path),
    )
    kubectl(layout, "wait", "--for=condition=Established", "--timeout=60s", "-f", str(path))


def up(layout: Layout) -> None:
    layout.ensure()
    pki.ensure_all(layout.pki)
    kubeconfig.write(layout, "admin", layout.kubeconfig)
    link_binaries(layout)
    procs.start(layout, _etcd(layout))
    procs.wait_until(
        "etcd",
        lambda: probes.ok_http(f"http://127.0.0.1:{layout.ports.etcd_client}/health"),
        60,
        procs.log_path(layout, "etcd"),
    )
    procs.start(layout, _apiserver(layout))
    procs.wait_until(
        "kube-apiserver", lambda: apiserver_ready(layout), 120, procs.log_path(layout, "kube-apiserver")
    )
    procs.start(layout, _controller_manager(layout))
    procs.start(layout, _scheduler(layout))
    for name, port in (
        ("kube-controller-manager", layout.ports.controller_manager),
        ("kube-scheduler", layout.ports.scheduler),
    ):
        url = f"https://127.0.0.1:{port}/healthz"
        procs.wait_until(name, partial(probes.ok, url), 60, procs.log_path(layout, name))
    apply_crds(layout, REPO_CRDS)  # converged's own API: WorkflowStep, SlurmCluster
    # the namespace's default ServiceAccount is made by the controller-manager; pods need it
    procs.wait_until(
        "default ServiceAccount",
        lambda: bool(kubectl(layout, "get", "serviceaccount", "default", "-o", "name", check=False)),
        60,
        procs.log_path(layout, "kube-controller-manager"),
    )


def down(layout: Layout) -> None:
    for name in reversed(COMPONENTS):
        procs.stop(layout, name)


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    out: list[tuple[str, bool, str]] = []
    etcd_ok = probes.ok_http(f"http://127.0.0.1:{layout.ports.etcd_client}/health")
    out.append(("etcd", etcd_ok, "health ok" if etcd_ok else "no answer on /health"))
    ready = apiserver_ready(layout)
    out.append(("kube-apiserver", ready, "readyz ok" if ready else "readyz failing"))
    for name, port in (
        ("kube-controller-manager", layout.ports.controller_manager),
        ("kube-scheduler", layout.ports.scheduler),
    ):
        good = probes.ok(f"https://127.0.0.1:{port}/healthz")
        out.append((name, good, "healthz ok" if good else "healthz failing"))
    return out


def env(layout: Layout) -> dict[str, str]:
    return {"KUBECONFIG": str(layout.kubeconfig), "CONVERGED_LOCAL_BIN": str(layout.root / "bin")}
