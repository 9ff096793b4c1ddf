"""What the history remembers of one finished step, and its file form: one JSON object per line (pure).

A sample is keyed by its rule and a digest of the rule's code (a changed rule starts a new history),
and carries the step's input size so that runtime can scale with it. Lines that do not parse are
skipped and counted: a store that one crashed writer left half a line in still reads.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

STORE_VERSION = 1


@dataclass(frozen=True)
class RunSample:
    """One finished step as the history keeps it. Seconds and MiB; None: not measured.

    `source` says where the figures come from: `step` (the WorkflowStep's status: start to completion,
    the step's own snakemake and container start included), `snakemake` (snakemake's metadata record:
    submission to the output's last write, so queue wait is included). `cpu_s` and `max_rss_mib` come
    from the rule's `benchmark:` file when it declares one (the WorkflowStep status carries neither)."""

    rule: str
    code_hash: str
    runtime_s: float
    ended: float  # epoch seconds: orders the samples, most recent last
    succeeded: bool = True
    input_bytes: int | None = None
    queue_s: float | None = None  # created to started: submission, queue, admission, container start
    dispatch_s: float | None = None  # its last upstream step's end to its creation (snakemake noticing)
    backend: str | None = None
    cpu_s: float | None = None
    max_rss_mib: float | None = None
    requested_minutes: int | None = None
    requested_mem_mib: int | None = None
    limit_failure: str | None = None  # "time" or "memory": killed at a limit
    run_id: str = ""
    job_id: int = 0
    source: str = "step"


def build_code_hash(code: str | None) -> str:
    """A short digest of a rule's code (its shell command, run: source or script path); "-" when unknown."""
    return hashlib.sha256(code.encode()).hexdigest()[:12] if code else "-"


def build_history_lines(samples: Iterable[RunSample]) -> str:
    """The samples as JSON lines (each ending in a newline), ready to append to the store."""
    out = []
    for s in samples:
        record = {"v": STORE_VERSION, **{k: v for k, v in asdict(s).items() if v is not None}}
        out.append(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")
    return "".join(out)


_FIELDS = {f.name: f for f in fields(RunSample)}
_REQUIRED = ("rule", "code_hash", "runtime_s", "ended")


def parse_history_lines(text: str) -> tuple[list[RunSample], int]:
    """The samples in a store's text, oldest first as written, and how many lines were skipped."""
    samples: list[RunSample] = []
    skipped = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        sample = _parse_line(line)
        if sample is None:
            skipped += 1
        else:
            samples.append(sample)
    return samples, skipped


def _parse_line(line: str) -> RunSample | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("v") != STORE_VERSION or any(k not in obj for k in _REQUIRED):
        return None
    values: dict[str, Any] = {}
    for key, value in obj.items():
        if key not in _FIELDS:
            continue  # a newer writer's field: ignored
        if not _valid(key, value):
            return None
        values[key] = value
    try:
        return RunSample(**values)
    except TypeError:
        return None


_STR = {"rule", "code_hash", "limit_failure", "run_id", "source", "backend"}
_INT = {"input_bytes", "requested_minutes", "requested_mem_mib", "job_id"}


def _valid(key: str, value: Any) -> bool:
    if key in _STR:
        return isinstance(value, str)
    if key == "succeeded":
        return isinstance(value, bool)
    if key in _INT:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    )
