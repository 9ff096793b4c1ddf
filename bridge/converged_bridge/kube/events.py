"""core/v1 Events about converged's objects (what `kubectl describe` shows)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from converged_bridge.kube.objects import KubeObjects
from converged_bridge.timing import utc_now
from converged_bridge.wire import EVENTS


def build_event(
    obj: dict[str, Any],
    type_: str,
    reason: str,
    message: str,
    *,
    component: str,
    host: str,
    now: datetime,
    suffix: str,
) -> dict[str, Any]:
    """An Event about `obj` (pure): reason and message cut to the API's limits."""
    meta = obj["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{suffix}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason[:128],
        "message": message[:1024],
        "type": type_,
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": component, "host": host},
        "reportingComponent": f"converged.dev/{component}",
        "reportingInstance": host,
    }


class EventRecorder:
    def __init__(
        self, objects: KubeObjects, component: str, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._objects = objects
        self._component = component
        self._clock = clock
        self._host = socket.gethostname()

    def emit_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an Event about `obj`; raises BackendError (callers decide whether that matters)."""
        body = build_event(
            obj,
            type_,
            reason,
            message,
            component=self._component,
            host=self._host,
            now=self._clock(),
            suffix=uuid.uuid4().hex[:16],
        )
        self._objects.create(EVENTS, body, namespace=obj["metadata"]["namespace"], verb="event")
