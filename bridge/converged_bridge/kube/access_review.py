"""Which of the calls a client will make its identity may not make: SelfSubjectAccessReviews, asked
before anything is done, so a missing permission is named (verb, resource, namespace) up front."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from converged_bridge.kube.objects import KubeObjects
from converged_bridge.wire import Kind

ACCESS_REVIEWS = Kind("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview")


@dataclass(frozen=True)
class Permission:
    verb: str
    kind: Kind
    namespace: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        what = f"{self.verb} {self.kind.plural}" + (f".{self.kind.group}" if self.kind.group else "")
        if self.name:
            what += f" {self.name}"
        return what + (f" in namespace {self.namespace}" if self.namespace else " (cluster-wide)")


def build_review(p: Permission) -> dict[str, object]:
    attributes: dict[str, object] = {"verb": p.verb, "group": p.kind.group, "resource": p.kind.plural}
    if p.namespace:
        attributes["namespace"] = p.namespace
    if p.name:
        attributes["name"] = p.name
    return {
        "apiVersion": ACCESS_REVIEWS.api_version,
        "kind": ACCESS_REVIEWS.kind,
        "spec": {"resourceAttributes": attributes},
    }


def missing_permissions(objects: KubeObjects, wanted: Sequence[Permission]) -> list[Permission]:
    """The permissions of `wanted` this client's identity lacks (one review each; none are cached)."""
    out = []
    for p in wanted:
        answer = objects.create(ACCESS_REVIEWS, build_review(p), verb="access-review")
        if not (answer.get("status") or {}).get("allowed"):
            out.append(p)
    return out
