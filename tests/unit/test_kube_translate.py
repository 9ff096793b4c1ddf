"""`kube.core.translate`: the Kubernetes client's and the network's errors as converged's own.

Each HTTP error goes through the real client's own path (`ApiClient.response_deserialize` over a real
urllib3 response, as `KubeCore.request` reads it), with a metav1.Status body as kube-apiserver writes
it; network failures are urllib3's and the OS's own exceptions.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTResponse
from urllib3 import HTTPResponse
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError

from converged_bridge.errors import BackendError, PermanentBackendError, TransientBackendError
from converged_bridge.kube.core import AlreadyExists, Conflict, Gone, NotFound, translate

WHAT = "POST /apis/converged.dev/v1alpha1/namespaces/team-a/workflowsteps"


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A metav1.Status, as kube-apiserver answers a refused request."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"name": "s-1", "group": "converged.dev", "kind": "workflowsteps"},
        "code": code,
    }


def refused(code: int, reason: str, body: dict[str, Any] | str) -> Exception:
    """The exception the kubernetes client raises for this answer, on KubeCore.request's path."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
    response = RESTResponse(
        HTTPResponse(body=raw, status=code, reason=reason, headers={"Content-Type": "application/json"})
    )
    response.read()
    with pytest.raises(ApiException) as raised:
        ApiClient().response_deserialize(response, {"200": "object", "201": "object"})
    return raised.value


def translated(code: int, reason: str, body: dict[str, Any] | str) -> Exception:
    return translate(refused(code, reason, body), WHAT)


def test_404_is_not_found() -> None:
    e = translated(404, "Not Found", status(404, "NotFound", 'workflowsteps.converged.dev "s-1" not found'))
    assert type(e) is NotFound and isinstance(e, PermanentBackendError)
    assert str(e) == f"{WHAT}: not found"


def test_409_is_already_exists_or_a_conflict_by_what_the_body_says() -> None:
    exists = status(409, "AlreadyExists", 'workflowsteps.converged.dev "s-1" already exists')
    assert type(translated(409, "Conflict", exists)) is AlreadyExists
    modified = status(
        409,
        "Conflict",
        'Operation cannot be fulfilled on workflowsteps.converged.dev "s-1": the object has been modified; '
        "please apply your changes to the latest version and try again",
    )
    conflict = translated(409, "Conflict", modified)
    assert type(conflict) is Conflict and isinstance(conflict, TransientBackendError)
    assert str(conflict) == f"{WHAT}: conflict"


@pytest.mark.parametrize(
    ("code", "reason", "status_reason"),
    [
        (429, "Too Many Requests", "TooManyRequests"),
        (500, "Internal Server Error", "InternalError"),
        (502, "Bad Gateway", "InternalError"),
        (503, "Service Unavailable", "ServiceUnavailable"),
        (504, "Gateway Timeout", "Timeout"),
    ],
)
def test_throttled_or_unavailable_is_transient(code: int, reason: str, status_reason: str) -> None:
    e = translated(code, reason, status(code, status_reason, "try again later"))
    assert type(e) is TransientBackendError
    assert str(e) == f"{WHAT}: HTTP {code} {reason}"


def test_a_refusal_is_permanent_and_carries_the_api_server_s_message() -> None:
    forbidden = status(
        403,
        "Forbidden",
        'workflowsteps.converged.dev is forbidden: User "alice" cannot create resource "workflowsteps" '
        'in API group "converged.dev" in the namespace "team-b"',
    )
    e = translated(403, "Forbidden", forbidden)
    assert type(e) is PermanentBackendError
    assert str(e) == f"{WHAT}: HTTP 403 Forbidden: {forbidden['message']}"
    gone = translated(410, "Gone", status(410, "Expired", "too old resource version: 12 (3456)"))
    # Gone: permanent for this request, and the watch's cue to LIST again (kube.informer)
    assert type(gone) is Gone and "HTTP 410 Gone: too old resource version" in str(gone)


def test_a_long_message_is_cut_and_a_body_that_is_not_a_status_is_quoted_from_its_start() -> None:
    invalid = status(422, "Invalid", "spec.command: Required value; " * 40)
    e = translated(422, "Unprocessable Entity", invalid)
    assert str(e) == f"{WHAT}: HTTP 422 Unprocessable Entity: {invalid['message'][:300]}"
    html = "<html><body>400 Bad Request</body></html>"
    assert str(translated(400, "Bad Request", html)) == f"{WHAT}: HTTP 400 Bad Request: {html}"
    proxy = translated(502, "Bad Gateway", "<html>upstream unreachable</html>")
    assert type(proxy) is TransientBackendError


def test_network_failures_are_transient() -> None:
    refused_conn = ConnectionRefusedError(111, "Connection refused")
    for error in (
        refused_conn,
        ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer")),
        ReadTimeoutError(None, "/apis", "Read timed out. (read timeout=30.0)"),  # type: ignore[arg-type]
        NewConnectionError(None, "Failed to establish a new connection: [Errno 111]"),  # type: ignore[arg-type]
    ):
        e = translate(error, WHAT)
        assert type(e) is TransientBackendError, error
        assert str(e).startswith(f"{WHAT}: {type(error).__name__}: ")


def test_anything_else_is_returned_as_it_is() -> None:
    bug = KeyError("metadata")
    assert translate(bug, WHAT) is bug
    assert not isinstance(translate(ValueError("x"), WHAT), BackendError)
