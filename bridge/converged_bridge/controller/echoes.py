"""Which watch events come from before the controller's own writes, told without ordering versions.

The watch delivers an object's versions in order, but behind the loop's own writes: after a write
answers with version V, every event for that object until V's own echo is a version from before the
write, and deciding on it would write the past again. Kubernetes makes resourceVersions opaque (compare
them only for equality, never for order), so the order is told by arrival: the version awaited is
remembered, events are stale until it arrives.
"""

from __future__ import annotations

from typing import Any


class AwaitedEchoes:
    """Per object UID, the resourceVersion of our last write whose echo the watch has not brought yet."""

    def __init__(self) -> None:
        self._awaited: dict[str, str] = {}

    def wrote(self, uid: str, before: str | None, answer: dict[str, Any]) -> None:
        """Our write of the object held at version `before` answered `answer`. An unchanged version (the
        write changed nothing) has no echo to wait for."""
        version = (answer.get("metadata") or {}).get("resourceVersion")
        if version and version != before:
            self._awaited[uid] = str(version)

    def is_stale(self, uid: str, obj: dict[str, Any]) -> bool:
        """`obj`, from the watch, is a version from before our last write of it; its echo ends the wait."""
        awaited = self._awaited.get(uid)
        if awaited is None:
            return False
        if (obj.get("metadata") or {}).get("resourceVersion") == awaited:
            del self._awaited[uid]  # the echo itself: what we hold already
            return False
        return True

    def forget(self, uid: str) -> None:
        self._awaited.pop(uid, None)

    def clear(self) -> None:
        """A new LIST replaced what the controller holds: nothing is awaited any more."""
        self._awaited.clear()
