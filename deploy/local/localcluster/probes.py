"""HTTP(S) health probes against local components."""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path


def https_get(
    url: str, ca: Path | None = None, cert: Path | None = None, key: Path | None = None, timeout: float = 3.0
) -> tuple[int, str]:
    """GET `url`; verify against `ca` when given (else accept our self-signed local certs)."""
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()  # noqa: S323
    if cert and key:
        ctx.load_cert_chain(str(cert), str(key))
    with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:  # noqa: S310 - local URLs only
        return resp.status, resp.read().decode(errors="replace")


def ok(url: str, **kw: object) -> bool:
    try:
        status, body = https_get(url, **kw)  # type: ignore[arg-type]
    except OSError:
        return False
    return status == 200 and body.strip() == "ok"


def ok_http(url: str, timeout: float = 3.0) -> bool:
    """True when a plain-HTTP GET answers 200 (etcd's /health answers JSON with health=true)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local URLs only
            body = resp.read().decode(errors="replace")
            return resp.status == 200 and '"health":"true"' in body.replace(" ", "")
    except OSError:
        return False


def ok_plain(url: str, timeout: float = 3.0) -> bool:
    """True when a plain-HTTP GET answers 200 with body "ok" (kubelet's /healthz)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local URLs only
            return bool(resp.status == 200) and resp.read().decode(errors="replace").strip() == "ok"
    except OSError:
        return False
