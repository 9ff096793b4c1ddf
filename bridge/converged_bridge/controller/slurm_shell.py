"""I/O around Slurm steps that the pure plan cannot do: transports per cluster, tokens, log files."""

from __future__ import annotations

import base64
import json
import os
import pwd
from collections.abc import Callable
from pathlib import Path

from converged_bridge.api.slurmcluster import SlurmClusterSpec, Transport
from converged_bridge.controller.status import LOG_TAIL_MAX
from converged_bridge.errors import PermanentBackendError
from converged_bridge.slurm.cli import CliTransport
from converged_bridge.slurm.restd import RestdTransport
from converged_bridge.slurm.transport import SlurmTransport
from converged_bridge.timing import Monotonic, monotonic

SecretReader = Callable[[str, str, str], str]  # (namespace, name, key) -> value
TOKEN_CACHE_SECONDS = 60.0


def jwt_subject(token: str) -> str | None:
    """The Slurm user a Slurm JWT was issued for (its `sun` claim); the signature is not checked here."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    sub = claims.get("sun") if isinstance(claims, dict) else None
    return str(sub) if sub else None


class TokenSource:
    """JWTs for the users of one SlurmCluster, read from the Secrets it names and cached briefly."""

    def __init__(
        self,
        name: str,
        spec: SlurmClusterSpec,
        read_secret: SecretReader,
        monotonic_clock: Monotonic = monotonic,
    ) -> None:
        self._monotonic = monotonic_clock
        if spec.restd is None:
            raise PermanentBackendError(f"SlurmCluster {name} has no restd settings")
        self._name = name
        self._spec = spec
        self._read = read_secret
        self._cache: dict[tuple[str, str, str], tuple[str, float]] = {}  # -> (value, monotonic expiry)
        ref = spec.restd.token_secret_ref
        self.service_user = (
            spec.restd.user or jwt_subject(self._secret(ref.namespace, ref.name, ref.key)) or "root"
        )

    def __call__(self, user: str) -> str:
        if self._spec.restd is None:  # checked in __init__; narrows the type
            raise PermanentBackendError(f"SlurmCluster {self._name} has no restd settings")
        if user == self.service_user:
            ref = self._spec.restd.token_secret_ref
        else:
            mapping = next((m for m in self._spec.user_mapping if m.user == user), None)
            if mapping is None:
                raise PermanentBackendError(f"SlurmCluster {self._name} has no token for Slurm user {user!r}")
            ref = mapping.token_secret_ref
        return self._secret(ref.namespace, ref.name, ref.key)

    def _secret(self, namespace: str, name: str, key: str) -> str:
        cached = self._cache.get((namespace, name, key))
        if cached and cached[1] > self._monotonic():
            return cached[0]
        value = self._read(namespace, name, key).strip()
        self._cache[(namespace, name, key)] = (value, self._monotonic() + TOKEN_CACHE_SECONDS)
        return value


def build_transport(name: str, spec: SlurmClusterSpec, read_secret: SecretReader) -> SlurmTransport:
    """The transport a SlurmCluster asks for."""
    if spec.transport == Transport.CLI:
        cli = spec.cli
        return CliTransport(bin_dir=cli.bin_dir if cli else None, slurm_conf=cli.slurm_conf if cli else None)
    if spec.restd is None:
        raise PermanentBackendError(f"SlurmCluster {name} uses transport restd but has no restd settings")
    tokens = TokenSource(name, spec, read_secret)
    return RestdTransport(
        spec.restd.url, tokens, service_user=tokens.service_user, api_version=spec.restd.openapi_version
    )


def prepare_dir(path: str, user: str, mode: int = 0o755) -> None:
    """Create `path` (and parents) owned by `user` when we may: on a shared filesystem the controller sees.

    Without access (a remote Slurm cluster) this does nothing: the site provides the directory.
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True, mode=mode)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(user)
            os.chown(p, pw.pw_uid, pw.pw_gid)
    except (OSError, KeyError):
        return


def write_private_file(path: str, content: str, user: str) -> None:
    """Write `content` to `path` readable by `user` only (mode 0600)."""
    p = Path(path)
    prepare_dir(str(p.parent), user, mode=0o700)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam(user)
            os.chown(p, pw.pw_uid, pw.pw_gid)
        except KeyError:
            pass


def read_log_tail(path: str, limit: int = LOG_TAIL_MAX) -> str | None:
    """The last `limit` bytes of a log file as text, or None when it cannot be read from here."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode(errors="replace")[-limit:]
    except OSError:
        return None
