"""The one door to the Kubernetes API: counted requests, translated errors, watches.

Every request of the plugin, the controller and the daemon goes through `KubeCore.request` (or
`watch`, `text`), so tests and benchmarks count API requests per step in one place, and errors come
out as converged's own: `NotFound`, `AlreadyExists`, `Conflict` (retry after reading again),
`TransientBackendError` (retry later) or `PermanentBackendError`. The kubernetes client (and any
kubeconfig) is touched only when a core is made, never at import.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import quote

from converged_bridge.errors import PermanentBackendError, TransientBackendError
from converged_bridge.wire import Kind

_OBJECT = {"200": "object", "201": "object", "202": "object"}


class NotFound(PermanentBackendError):
    """The object (or the kind) is not there."""


class AlreadyExists(PermanentBackendError):
    """The object to create is there already (created earlier by us: adopt it)."""


class Conflict(TransientBackendError):
    """Someone else changed the object; read it again and retry."""


class Gone(PermanentBackendError):
    """410: the resourceVersion a WATCH asked to resume from is compacted away; LIST again."""


def load_api_client(kubeconfig: str | None = None) -> Any:
    """An ApiClient from `kubeconfig`, else $KUBECONFIG / ~/.kube/config, else the in-cluster account.

    $KUBECONFIG is read now: the kubernetes client reads it once, when it is first imported, so a
    variable set later (by a test, or a host process before starting the executor) would be missed.
    """
    from kubernetes import client, config

    candidates = [kubeconfig] if kubeconfig else [*os.environ.get("KUBECONFIG", "").split(os.pathsep)]
    candidates.append(os.path.expanduser("~/.kube/config"))
    for path in (c for c in candidates if c):
        if os.path.exists(path):
            return config.new_client_from_config(config_file=path, persist_config=False)
    if kubeconfig:
        raise config.ConfigException(f"kubeconfig {kubeconfig} does not exist")
    config.load_incluster_config()
    return client.ApiClient()


def current_namespace(kubeconfig: str | None = None) -> str:
    """The namespace of the kubeconfig's current context, else `default`."""
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        return str(active.get("context", {}).get("namespace") or "default")
    except (config.ConfigException, OSError):
        return "default"


def object_path(kind: Kind, name: str | None = None, namespace: str | None = None) -> str:
    """The REST path of a collection or an object: /api/v1/nodes/x, /apis/g/v/namespaces/ns/p/x."""
    root = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    where = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
    tail = f"/{quote(name, safe='')}" if name else ""
    return f"{root}{where}/{kind.plural}{tail}"


def translate(e: Exception, what: str) -> Exception:
    """A kubernetes-client or network error as one of converged's BackendErrors."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(e, ApiException):
        if e.status == 404:
            return NotFound(f"{what}: not found")
        if e.status == 410:
            return Gone(f"{what}: HTTP 410 {e.reason}: {_message(e.body)}")
        if e.status == 409:
            if "AlreadyExists" in str(e.body) or "already exists" in str(e.body):
                return AlreadyExists(f"{what}: already exists")
            return Conflict(f"{what}: conflict")
        if e.status in (429, 500, 502, 503, 504):
            return TransientBackendError(f"{what}: HTTP {e.status} {e.reason}")
        return PermanentBackendError(f"{what}: HTTP {e.status} {e.reason}: {_message(e.body)}")
    if isinstance(e, HTTPError | OSError):
        return TransientBackendError(f"{what}: {type(e).__name__}: {e}")
    return e


def _message(body: Any) -> str:
    """The `message` of a metav1.Status body, else the body's start."""
    try:
        return str(json.loads(body)["message"])[:300]
    except (TypeError, ValueError, KeyError):
        return str(body)[:300]


class KubeCore:
    """Requests on one ApiClient; `calls` counts them by verb (list, create, patch-status, ...)."""

    def __init__(self, api_client: Any, *, field_manager: str, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.field_manager = field_manager
        self._timeout = timeout
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()  # the controller's appliers count from several threads

    def count(self, verb: str) -> None:
        with self._calls_lock:
            self.calls[verb] += 1

    def request(
        self,
        verb: str,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """One request; the decoded JSON answer ({} when empty)."""
        response = self._send(verb, method, path, query, body, content_type)
        try:
            response.read()
            data = self.api_client.response_deserialize(response, _OBJECT).data
        except Exception as e:
            raise translate(e, f"{method} {path}") from e
        return cast(dict[str, Any], data or {})

    def text(self, verb: str, path: str, query: list[tuple[str, str]] | None = None) -> str:
        """A GET whose answer is text (a pod's log)."""
        response = self._send(verb, "GET", path, query, None, None, accept="*/*")
        try:
            raw = response.read()
            if not 200 <= response.status <= 299:
                self.api_client.response_deserialize(response, {})  # raises the ApiException
        except Exception as e:
            raise translate(e, f"GET {path}") from e
        return bytes(raw or b"").decode("utf-8", errors="replace")

    def watch(
        self, path: str, query: list[tuple[str, str]], timeout_seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) events of a WATCH (BOOKMARK and ERROR included) until the server ends it."""
        query = [*query, ("watch", "true"), ("allowWatchBookmarks", "true")]
        query.append(("timeoutSeconds", str(timeout_seconds)))
        response = self._send("watch", "GET", path, query, None, None, timeout=timeout_seconds + 30.0)
        raw = response.response  # the urllib3 response, not read yet
        try:
            if not 200 <= response.status <= 299:
                response.read()
                self.api_client.response_deserialize(response, {})
            buffer = b""
            for chunk in raw.stream(amt=None, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        yield str(event["type"]), cast(dict[str, Any], event["object"])
        except Exception as e:
            raise translate(e, f"watch {path}") from e
        finally:
            raw.release_conn()

    def _send(
        self,
        verb: str,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str | None,
        *,
        accept: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        self.count(verb)
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            request = self.api_client.param_serialize(
                method=method,
                resource_path=path,
                query_params=query or None,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            return self.api_client.call_api(*request, _request_timeout=timeout or self._timeout)
        except Exception as e:
            raise translate(e, f"{method} {path}") from e
