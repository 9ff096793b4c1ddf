"""A backend unit's news that what its steps depend on changed (its informers saw a Job, Workload or pod
change): the controller's loop then runs that backend's part of a poll cycle early, so a step's end
is written when it happens, not up to a poll interval later.

Informer threads call `wake(backend)` for every change; at most one ("WAKE", backend) waits on the
loop's queue per backend until the loop takes it (`taken`), so a burst of changes costs one entry.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from converged_bridge.api.workflowstep import Backend

WAKE = "WAKE"


class Wakeups:
    def __init__(self, inbox: queue.Queue[tuple[str, Any]]) -> None:
        self.inbox = inbox
        self._queued: set[Backend] = set()
        self._lock = threading.Lock()

    def waker(self, backend: Backend) -> Callable[[], None]:
        """What `backend`'s unit calls when something its steps depend on changed."""
        return lambda: self.wake(backend)

    def wake(self, backend: Backend) -> None:
        with self._lock:
            if backend in self._queued:
                return
            self._queued.add(backend)
        self.inbox.put((WAKE, backend))

    def taken(self, backend: Backend) -> None:
        with self._lock:
            self._queued.discard(backend)
