"""Any object by kind: get, list, create, replace, merge-patch, server-side apply, delete.

The generic facade on `KubeCore` that the daemon (Nodes, Leases, Kueue's and converged's objects) and
the Kueue backend (operator objects, Workloads, pods) use. Apply goes as `application/apply-patch+yaml`
(JSON is YAML) with the core's field manager and `force=true`: the writer owns the fields it applies.
"""

from __future__ import annotations

from typing import Any

from converged_bridge.kube.core import KubeCore, NotFound, object_path
from converged_bridge.wire import Kind


class KubeObjects:
    def __init__(self, core: KubeCore) -> None:
        self.core = core

    @property
    def field_manager(self) -> str:
        return self.core.field_manager

    def get(
        self, kind: Kind, name: str, *, namespace: str | None = None, verb: str = "get"
    ) -> dict[str, Any]:
        """GET one object; `verb` is what the core counts it as (default "get")."""
        return self.core.request(verb, "GET", object_path(kind, name, namespace))

    def list_objects(
        self,
        kind: Kind,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        namespace: str | None = None,
    ) -> list[dict[str, Any]]:
        """Objects of `kind` (one namespace, or all) matching the selectors, in one LIST."""
        return list(self.list_page(kind, label_selector, field_selector, namespace).get("items") or [])

    def list_page(
        self,
        kind: Kind,
        label_selector: str | None = None,
        field_selector: str | None = None,
        namespace: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """The LIST answer itself (items and metadata.resourceVersion)."""
        query = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        if limit:
            query.append(("limit", str(limit)))
        return self.core.request("list", "GET", object_path(kind, None, namespace), query)

    def served(self, kind: Kind) -> bool:
        """Whether the API server serves `kind` (a LIST with limit 1)."""
        try:
            self.list_page(kind, limit=1)
        except NotFound:
            return False
        return True

    def discovered(self, kind: Kind) -> bool:
        """Whether API discovery lists `kind` (readable by every authenticated user, unlike a LIST)."""
        root = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
        try:
            doc = self.core.request("discovery", "GET", root)
        except NotFound:
            return False
        return any(r.get("name") == kind.plural for r in doc.get("resources") or [])

    def create(
        self, kind: Kind, body: dict[str, Any], *, namespace: str | None = None, verb: str = "create"
    ) -> dict[str, Any]:
        """POST; AlreadyExists when an object of that name is there."""
        query = [("fieldManager", self.field_manager)]
        return self.core.request(
            verb, "POST", object_path(kind, None, namespace), query, body, "application/json"
        )

    def replace(
        self, kind: Kind, name: str, body: dict[str, Any], *, namespace: str | None = None
    ) -> dict[str, Any]:
        """PUT: with metadata.resourceVersion set, fails with Conflict if someone wrote in between."""
        query = [("fieldManager", self.field_manager)]
        return self.core.request(
            "replace", "PUT", object_path(kind, name, namespace), query, body, "application/json"
        )

    def patch(
        self,
        kind: Kind,
        name: str,
        patch: dict[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        verb: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch (of the status subresource when `subresource` is "status")."""
        path = object_path(kind, name, namespace) + (f"/{subresource}" if subresource else "")
        query = [("fieldManager", self.field_manager)]
        verb = verb or ("patch" if subresource is None else f"patch-{subresource}")
        return self.core.request(verb, "PATCH", path, query, patch, "application/merge-patch+json")

    def apply(
        self,
        kind: Kind,
        name: str,
        body: dict[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply of `body` (the complete set of fields this field manager owns)."""
        path = object_path(kind, name, namespace) + (f"/{subresource}" if subresource else "")
        query = [("fieldManager", self.field_manager), ("force", "true")]
        verb = "apply" if subresource is None else f"apply-{subresource}"
        return self.core.request(verb, "PATCH", path, query, body, "application/apply-patch+yaml")

    def delete(
        self, kind: Kind, name: str, *, namespace: str | None = None, propagation: str | None = None
    ) -> None:
        """DELETE; gone already counts as done. `propagation` Background deletes what it owns after it."""
        body = {"propagationPolicy": propagation} if propagation else None
        try:
            self.core.request("delete", "DELETE", object_path(kind, name, namespace), None, body)
        except NotFound:
            return

    def delete_collection(
        self, kind: Kind, *, namespace: str, label_selector: str, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """DELETE of every object matching the selectors, in one request; the objects deleted."""
        query = [("labelSelector", label_selector)]
        if field_selector:
            query.append(("fieldSelector", field_selector))
        doc = self.core.request("delete", "DELETE", object_path(kind, None, namespace), query)
        return list(doc.get("items") or [])
