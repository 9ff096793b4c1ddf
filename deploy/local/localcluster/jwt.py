"""Slurm JWTs minted from a cluster's HS256 key (auth/jwt's `jwt_key`), as `scontrol token` does, but
without asking slurmctld: `cluster env`, the site's token Secrets and the health probes keep working
while a cluster's slurmctld is down (which is what the outage tests do to it)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def build_token(key: bytes, user: str, lifespan_s: int, now: int) -> str:
    """The JWT Slurm's auth/jwt accepts: HS256 over {"exp", "iat", "sun"} (pure)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"exp": now + lifespan_s, "iat": now, "sun": user}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def mint(key_path: Path, user: str, lifespan_s: int) -> str:
    return build_token(key_path.read_bytes(), user, lifespan_s, int(time.time()))
