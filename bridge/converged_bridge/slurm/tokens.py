"""Slurm JWTs for the users of one SlurmCluster, read from the Secrets it names and cached briefly."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.errors import PermanentBackendError
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
