"""Time as the code reads it: injected clocks, and "never" spelled as None.

A monotonic clock starts near zero when a machine (or a container's time namespace) starts, so a
default of 0.0 for "never happened" reads as "happened at boot": on a node up for less than the
period, it is never due. Every "last time X happened" here is `float | None`, and `due` is the one
place that decides whether a period has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Monotonic = Callable[[], float]  # seconds, only differences mean anything (time.monotonic)
WallClock = Callable[[], datetime]  # an aware UTC datetime, for timestamps written to the API


def utc_now() -> datetime:
    return datetime.now(UTC)


def monotonic() -> float:
    return time.monotonic()


def due(last: float | None, now: float, every: float) -> bool:
    """`every` seconds have passed since `last`, or it never happened (`last` is None)."""
    return last is None or now - last >= every


def since(last: float | None, now: float) -> float | None:
    """Seconds from `last` to `now`; None when `last` never happened."""
    return None if last is None else now - last
