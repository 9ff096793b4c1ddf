"""Reading the end of a step's log file on the shared filesystem (I/O), for every backend that writes one."""

from __future__ import annotations

import os

LOG_TAIL_MAX = 4096  # like a Pod's termination message


def read_log_tail(path: str, limit: int = LOG_TAIL_MAX) -> str | None:
    """The last `limit` bytes of a log file as text, or None when it cannot be read from here."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode(errors="replace")[-limit:]
    except OSError:
        return None
