"""The controller's watcher thread: LIST, then WATCH from its resourceVersion; LIST again when the
watch expires (410) or fails. Every answer goes onto the controller's event queue."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from converged_bridge.controller.settings import ControllerSettings
from converged_bridge.errors import BackendError
from converged_bridge.kube.steps import WorkflowSteps

log = logging.getLogger("converged.controller.watch")


def watch_steps(
    api: WorkflowSteps,
    settings: ControllerSettings,
    events: queue.Queue[tuple[str, Any]],
    stop: threading.Event,
) -> None:
    """Until `stop`: ("SYNC", items) after each LIST, then (type, object) for each change."""
    backoff = 0.5
    while not stop.is_set():
        try:
            items, rv = api.list_steps(settings.namespace, settings.label_selector)
            events.put(("SYNC", items))
            backoff = 0.5
            while not stop.is_set():
                expired = False
                for kind, obj in api.watch_steps(
                    rv, settings.namespace, settings.watch_timeout, settings.label_selector
                ):
                    if kind == "ERROR":
                        expired = True
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if kind != "BOOKMARK":
                        events.put((kind, obj))
                    if stop.is_set():
                        return
                if expired:
                    break
        except BackendError as e:
            log.warning("watching WorkflowSteps failed, retrying in %.1fs: %s", backoff, e)
            stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)
