"""Kubeconfig files for the local API server, one per client identity."""

from __future__ import annotations

import json
from pathlib import Path

from .layout import Layout


def build_kubeconfig(
    server: str, ca: Path, cert: Path, key: Path, user: str, namespace: str | None = None
) -> str:
    """A kubeconfig (JSON is valid YAML) with one cluster, user and context named `converged-local`
    (in `namespace` when given: the one a user's tools default to)."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "converged-local", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [
            {
                "name": "converged-local",
                "context": {"cluster": "converged-local", "user": user}
                | ({"namespace": namespace} if namespace else {}),
            }
        ],
        "current-context": "converged-local",
    }
    return json.dumps(doc, indent=2) + "\n"


def write(layout: Layout, identity: str, path: Path) -> Path:
    """Write a kubeconfig for pki/<identity>.{crt,key} to `path` (only if its content changed)."""
    text = build_kubeconfig(
        f"https://127.0.0.1:{layout.ports.apiserver}",
        layout.pki / "ca.crt",
        layout.pki / f"{identity}.crt",
        layout.pki / f"{identity}.key",
        identity,
    )
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        path.chmod(0o600)
    return path


def for_identity(layout: Layout, identity: str) -> Path:
    return write(layout, identity, layout.pki / f"{identity}.kubeconfig")
