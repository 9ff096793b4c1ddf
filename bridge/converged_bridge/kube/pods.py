"""Pods: the ones a step made, and their logs."""

from __future__ import annotations

from typing import Any

from converged_bridge.kube.core import object_path
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.wire import PODS


def list_pods(
    objects: KubeObjects, label_selector: str, namespace: str | None = None
) -> list[dict[str, Any]]:
    """Pods (one namespace, or all) matching `label_selector`, in one LIST."""
    return objects.list_objects(PODS, label_selector=label_selector, namespace=namespace)


def pod_names(objects: KubeObjects, namespace: str, label_selector: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in list_pods(objects, label_selector, namespace))


def pod_log(objects: KubeObjects, namespace: str, name: str, tail_lines: int | None = None) -> str:
    query = [("tailLines", str(tail_lines))] if tail_lines else []
    return objects.core.text("get-log", object_path(PODS, name, namespace) + "/log", query)
