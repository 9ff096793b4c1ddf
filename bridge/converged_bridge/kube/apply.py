"""Server-side apply, list, get, create, replace and delete of any object, by group/version/plural.

For the resource daemon, which writes core objects (Nodes, Leases) and Kueue's and converged's own
through one path. Apply goes as `application/apply-patch+yaml` (JSON is YAML) with a field manager and
`force=true`: the daemon is the only writer of the fields it applies. Errors come out translated
(`NotFound`, `Conflict`, `TransientBackendError`, `PermanentBackendError`), every request is counted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, cast
from urllib.parse import quote

from converged_bridge.kube.access import _translate

_OBJECT = {"200": "object", "201": "object", "202": "object"}


def object_path(
    group: str, version: str, plural: str, name: str | None = None, namespace: str | None = None
) -> str:
    """The REST path of a collection or an object: /api/v1/nodes/x, /apis/g/v/namespaces/ns/p/x."""
    root = f"/apis/{group}/{version}" if group else f"/api/{version}"
    where = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
    tail = f"/{quote(name, safe='')}" if name else ""
    return f"{root}{where}/{plural}{tail}"


class KubeObjects:
    """Generic object access on one ApiClient; `calls` counts requests by verb (apply, list, ...)."""

    def __init__(self, api_client: Any, *, field_manager: str, timeout: float = 30.0) -> None:
        self._api = api_client
        self.field_manager = field_manager
        self._timeout = timeout
        self.calls: Counter[str] = Counter()

    def apply(
        self,
        group: str,
        version: str,
        plural: str,
        name: str,
        body: dict[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        path = object_path(group, version, plural, name, namespace) + (
            f"/{subresource}" if subresource else ""
        )
        query = [("fieldManager", self.field_manager), ("force", "true")]
        return self._request(
            "apply" if subresource is None else f"apply-{subresource}",
            "PATCH",
            path,
            query,
            body,
            "application/apply-patch+yaml",
        )

    def get(
        self, group: str, version: str, plural: str, name: str, *, namespace: str | None = None
    ) -> dict[str, Any]:
        return self._request("get", "GET", object_path(group, version, plural, name, namespace))

    def list_objects(
        self,
        group: str,
        version: str,
        plural: str,
        *,
        label_selector: str | None = None,
        namespace: str | None = None,
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        doc = self._request("list", "GET", object_path(group, version, plural, None, namespace), query)
        return list(doc.get("items") or [])

    def create(
        self, group: str, version: str, plural: str, body: dict[str, Any], *, namespace: str | None = None
    ) -> dict[str, Any]:
        query = [("fieldManager", self.field_manager)]
        path = object_path(group, version, plural, None, namespace)
        return self._request("create", "POST", path, query, body, "application/json")

    def replace(
        self,
        group: str,
        version: str,
        plural: str,
        name: str,
        body: dict[str, Any],
        *,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """PUT: with metadata.resourceVersion set, fails with Conflict if someone wrote in between."""
        query = [("fieldManager", self.field_manager)]
        path = object_path(group, version, plural, name, namespace)
        return self._request("replace", "PUT", path, query, body, "application/json")

    def delete(
        self, group: str, version: str, plural: str, name: str, *, namespace: str | None = None
    ) -> None:
        self._request("delete", "DELETE", object_path(group, version, plural, name, namespace))

    def _request(
        self,
        verb: str,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        self.calls[verb] += 1
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            request = self._api.param_serialize(
                method=method,
                resource_path=path,
                query_params=query or None,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(*request, _request_timeout=self._timeout)
            response.read()
            data = self._api.response_deserialize(response, _OBJECT).data
        except Exception as e:
            raise _translate(e, f"{method} {path}") from e
        return cast(dict[str, Any], data or {})
