"""Reading one key of a Secret (Slurm tokens, a step's secret environment values)."""

from __future__ import annotations

import base64

from converged_bridge.errors import PermanentBackendError
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.wire import SECRETS


def read_secret_key(objects: KubeObjects, namespace: str, name: str, key: str) -> str:
    """The decoded value of `key` in Secret `namespace/name`; the value is never logged."""
    secret = objects.get(SECRETS, name, namespace=namespace, verb="get-secret")
    data = secret.get("data") or {}
    if key not in data:
        raise PermanentBackendError(f"secret {namespace}/{name} has no key {key!r}")
    return base64.b64decode(data[key]).decode()


class SecretKeys:
    """`read_secret_key` bound to a client: the (namespace, name, key) -> value reader others take."""

    def __init__(self, objects: KubeObjects) -> None:
        self._objects = objects

    def __call__(self, namespace: str, name: str, key: str) -> str:
        return read_secret_key(self._objects, namespace, name, key)
