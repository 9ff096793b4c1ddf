"""One clock a test moves by hand: a monotonic reading and a wall reading that advance together.

The monotonic reading starts at a few seconds, as on a machine (or in a time namespace) that has just
started: code that mistakes 0.0 for "never" fails here on every machine, not only on young ones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

YOUNG = 5.0  # seconds since "boot" when a test starts
WALL_START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


class ManualClock:
    def __init__(self, start: float = YOUNG, wall: datetime = WALL_START) -> None:
        self._monotonic = start
        self._wall = wall

    def monotonic(self) -> float:
        return self._monotonic

    def wall(self) -> datetime:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._wall += timedelta(seconds=seconds)
