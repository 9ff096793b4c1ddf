"""How the controller records what it decided on an object it drives (a WorkflowStep or a
StepAllocation): the events the intents ask for, and the refusal of an object whose spec is invalid.

Recording is best effort: an event or a refusal that cannot be written is logged, never raised, so a
cycle goes on with the other objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import ValidationError

from converged_bridge.api.base import describe_validation_error
from converged_bridge.errors import BackendError
from converged_bridge.reconcile.intents import Emit
from converged_bridge.reconcile.status import build_invalid_status
from converged_bridge.timing import WallClock

log = logging.getLogger("converged.controller")

PatchStatus = Callable[[str, str, dict[str, Any]], Any]  # (namespace, name, status)


class EventSink(Protocol):
    def emit_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None: ...


def emit_intent_event(events: EventSink, obj: dict[str, Any], intent: Emit) -> None:
    try:
        events.emit_event(obj, intent.type, intent.reason, intent.message)
    except BackendError as e:
        log.info("event %s for %s not recorded: %s", intent.reason, obj["metadata"]["name"], e)


def refuse_invalid(
    obj: dict[str, Any],
    error: ValidationError,
    patch_status: PatchStatus,
    events: EventSink,
    clock: WallClock,
) -> None:
    """Mark `obj` Failed with reason InvalidSpec and say why in a Warning event (once: an object already
    Failed is left alone)."""
    if (obj.get("status") or {}).get("phase") == "Failed":
        return
    message = describe_validation_error(error)[:2000]
    meta = obj["metadata"]
    try:
        patch_status(meta["namespace"], meta["name"], build_invalid_status(meta, message, clock()))
        events.emit_event(obj, "Warning", "InvalidSpec", message)
    except BackendError as e:
        log.warning("could not report invalid %s %s: %s", obj.get("kind", "object"), meta["name"], e)
