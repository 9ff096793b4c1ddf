"""The operators a site runs beside Kueue, out of cluster: the JobSet controller (v0.12) and the MPI
Operator (v0.8, kubeflow.org/v2beta1 MPIJobs). Their CRDs are applied by kueue.up (Kueue enables an
integration only when its CRD is served when it starts).

JobSet: leader election and internal certificates off, its webhook server on 127.0.0.1 with the local
webhook certificate (its readiness waits for it) but no webhook configuration registered: converged's
builder sets what JobSet's defaulting webhook would (successPolicy, startupPolicy, network).
MPI Operator: it always takes a leader Lease (namespace `default` here) and serves health on :8080,
which cannot be changed; no metrics.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from . import kubeconfig, pki, procs
from .layout import Layout
from .procs import Daemon

JOBSET = "jobset"
MPI = "mpi-operator"
MPI_HEALTH = "http://127.0.0.1:8080/healthz"  # fixed in the MPI Operator's main


def build_jobset_config(layout: Layout, cert_dir: Path) -> dict[str, object]:
    p = layout.ports
    return {
        "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{p.jobset_health}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": p.jobset_webhook, "certDir": str(cert_dir)},
        "clientConnection": {"qps": 100, "burst": 200},
    }


def build_mpi_argv(layout: Layout) -> list[str]:
    return [
        str(layout.bin("mpi-operator", "mpi-operator")),
        f"-kubeConfig={kubeconfig.for_identity(layout, MPI)}",
        "-lock-namespace=default",
        "-monitoring-port=0",
        "-kube-api-qps=50",
        "-kube-api-burst=100",
        "-threadiness=2",
        "-cluster-domain=cluster.local",
        "-alsologtostderr",
        "-v=2",
    ]


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - local URLs only
            return bool(resp.status == 200)
    except OSError:
        return False


def jobset_ready(layout: Layout) -> bool:
    return _get_ok(f"http://127.0.0.1:{layout.ports.jobset_health}/readyz")


def mpi_ready() -> bool:
    return _get_ok(MPI_HEALTH)


def up(layout: Layout) -> None:
    pki.ensure_all(layout.pki)
    work = layout.component_dir(JOBSET)
    cert_dir = work / "certs"
    cert_dir.mkdir(parents=True, exist_ok=True)
    for src, dst in (("webhook.crt", "tls.crt"), ("webhook.key", "tls.key")):
        shutil.copyfile(layout.pki / src, cert_dir / dst)
    config = work / "config.json"
    text = json.dumps(build_jobset_config(layout, cert_dir), indent=2) + "\n"
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
        procs.stop(layout, JOBSET)  # restart on a changed configuration
    kc = kubeconfig.for_identity(layout, JOBSET)
    procs.start(
        layout,
        Daemon(
            JOBSET,
            [str(layout.bin(JOBSET, JOBSET)), f"--config={config}", "--zap-log-level=info"],
            env={"KUBECONFIG": str(kc)},
        ),
    )
    procs.start(
        layout,
        Daemon(MPI, build_mpi_argv(layout), env={"KUBECONFIG": str(kubeconfig.for_identity(layout, MPI))}),
    )
    procs.wait_until(
        "JobSet controller ready", lambda: jobset_ready(layout), 90, procs.log_path(layout, JOBSET)
    )
    procs.wait_until("MPI Operator healthy", mpi_ready, 90, procs.log_path(layout, MPI))


def down(layout: Layout) -> None:
    procs.stop(layout, MPI)
    procs.stop(layout, JOBSET)


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    js = jobset_ready(layout)
    mpi = mpi_ready()
    return [
        ("jobset", js, f"{layout.versions['JOBSET_VERSION']} readyz ok" if js else "readyz failing"),
        (
            "mpi-operator",
            mpi,
            f"{layout.versions['MPI_OPERATOR_VERSION']} healthz ok" if mpi else "healthz failing",
        ),
    ]
