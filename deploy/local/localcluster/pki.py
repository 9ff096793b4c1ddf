"""A private CA and the certificates the local control plane needs, made with openssl once."""

from __future__ import annotations

from pathlib import Path

from .procs import run

SERVICE_IP = "10.96.0.1"  # first address of the service range: the `kubernetes` Service
HOST_BRIDGE_IP = "10.85.0.1"  # the host on the pods' bridge (containerd.HOST_ADDRESS): how pods reach it


def _ca(pki: Path) -> None:
    if (pki / "ca.crt").exists():
        return
    run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-keyout",
            str(pki / "ca.key"),
            "-out",
            str(pki / "ca.crt"),
            "-subj",
            "/CN=converged-local-ca",
        ]
    )


def ca(pki: Path) -> Path:
    """The site's CA certificate, made if missing."""
    pki.mkdir(parents=True, exist_ok=True)
    _ca(pki)
    return pki / "ca.crt"


def cert(pki: Path, name: str, subject: str, sans: list[str] | None = None, server: bool = False) -> None:
    """Create pki/<name>.{key,crt} signed by the CA unless it exists with the same subject and SANs."""
    ext = pki / f"{name}.ext"
    if (pki / f"{name}.crt").exists() and (not sans or _sans_of(ext) == sans):
        return
    _ca(pki)
    key, csr, crt = pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.crt"
    run(
        [
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            subject,
        ]
    )
    usage = "serverAuth" if server else "clientAuth"
    lines = [
        "basicConstraints=CA:FALSE",
        "keyUsage=digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(pki / "ca.crt"),
            "-CAkey",
            str(pki / "ca.key"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-out",
            str(crt),
            "-extfile",
            str(ext),
        ]
    )
    csr.unlink()
    ext.unlink()
    key.chmod(0o600)


def service_account_keys(pki: Path) -> None:
    if (pki / "sa.key").exists():
        return
    run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"])
    run(["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")])
    (pki / "sa.key").chmod(0o600)


def _sans_of(ext: Path) -> list[str] | None:
    """The SANs a certificate was made with (from its extension file), so a changed list remakes it."""
    if not ext.exists():
        return None
    for line in ext.read_text().splitlines():
        if line.startswith("subjectAltName="):
            return line.removeprefix("subjectAltName=").split(",")
    return None


def ensure_all(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    _ca(pki)
    cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        server=True,
        sans=[
            "IP:127.0.0.1",
            f"IP:{SERVICE_IP}",
            f"IP:{HOST_BRIDGE_IP}",  # the daemon's pods reach the API server there
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ],
    )
    cert(pki, "admin", "/O=system:masters/CN=converged-admin")
    cert(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client")
    cert(pki, "controller-manager", "/CN=system:kube-controller-manager")
    cert(pki, "scheduler", "/CN=system:kube-scheduler")
    cert(pki, "kwok", "/O=system:masters/CN=converged-kwok")
    cert(pki, "kueue", "/O=system:masters/CN=converged-kueue")
    cert(pki, "jobset", "/O=system:masters/CN=converged-jobset")
    cert(pki, "mpi-operator", "/O=system:masters/CN=converged-mpi-operator")
    cert(pki, "coredns", "/O=system:masters/CN=converged-coredns")
    cert(pki, "webhook", "/CN=localhost", server=True, sans=["IP:127.0.0.1", "DNS:localhost"])
    service_account_keys(pki)
