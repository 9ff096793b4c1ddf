"""Right-sized requests (opt-in) and the one retry at the declared limits (pure).

A right-sized step asks for the time and memory its rule's recent runs needed, with a margin, never
more than the rule declares: Slurm backfills short jobs into gaps and Kueue admits more into the same
quota. A step killed at a learnt request (Slurm TIMEOUT / OUT_OF_MEMORY, a Kubernetes Job's
DeadlineExceeded, a container OOMKilled) is run once more with the declared limits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from converged_bridge.history.estimate import Estimate, percentile
from converged_bridge.history.samples import RunSample

MIN_RUNS = 2  # runs of the rule seen before its requests are learnt
MARGIN = 0.5  # on top of the recent runs' 95th percentile
TIME_PAD_S = 60.0  # and a minute: start-up varies more than the work
MEM_PAD_MIB = 64.0
MEM_STEP_MIB = 64

LimitKind = Literal["time", "memory"]
TIME_REASONS = frozenset({"TIMEOUT", "DeadlineExceeded"})
MEMORY_REASONS = frozenset({"OUT_OF_MEMORY", "OOMKilled"})
KILLED_EXIT_CODE = 137  # SIGKILL: what a container killed by the OOM killer exits with


@dataclass(frozen=True)
class RightSize:
    """The requests of one step; `*_learnt`: from history (below the declared limit), else declared."""

    runtime_minutes: int | None
    mem_mib: int | None
    runtime_learnt: bool = False
    mem_learnt: bool = False

    @property
    def learnt(self) -> bool:
        return self.runtime_learnt or self.mem_learnt


def plan_right_size(
    history: Sequence[RunSample],
    estimate: Estimate,
    declared_minutes: int | None,
    declared_mem_mib: int | None,
    *,
    margin: float = MARGIN,
    min_runs: int = MIN_RUNS,
) -> RightSize:
    """Time: the 95th percentile of the recent runtimes (or the input-size estimate, widened by its
    spread), plus `margin` and a minute, in whole minutes. Memory: the recent peak plus `margin`, in
    64 MiB steps. Each only when the rule declares that limit, `min_runs` runs measured it and the learnt
    value is below it."""
    minutes, runtime_learnt = declared_minutes, False
    runtimes = [s.runtime_s for s in history]
    if declared_minutes is not None and len(runtimes) >= min_runs:
        if estimate.scaled:
            base = estimate.runtime_s * (1 + (estimate.spread or 0.0))
        else:
            base = max(percentile(runtimes, 0.95), estimate.runtime_s)
        learnt = max(1, math.ceil((base * (1 + margin) + TIME_PAD_S) / 60))
        if learnt < declared_minutes:
            minutes, runtime_learnt = learnt, True
    mem, mem_learnt = declared_mem_mib, False
    peaks = [s.max_rss_mib for s in history if s.max_rss_mib is not None]
    if declared_mem_mib is not None and len(peaks) >= min_runs:
        want = max(peaks) * (1 + margin) + MEM_PAD_MIB
        learnt_mem = MEM_STEP_MIB * math.ceil(want / MEM_STEP_MIB)
        if learnt_mem < declared_mem_mib:
            mem, mem_learnt = learnt_mem, True
    return RightSize(minutes, mem, runtime_learnt, mem_learnt)


def classify_limit_failure(reason: str | None, exit_code: int | None, mem_learnt: bool) -> LimitKind | None:
    """Which limit killed the step: its backend's reason, or exit code 137 when its memory was learnt
    (a Kubernetes container killed by the OOM killer: the Job's condition only says BackoffLimitExceeded)."""
    if reason in TIME_REASONS:
        return "time"
    if reason in MEMORY_REASONS or (mem_learnt and exit_code == KILLED_EXIT_CODE):
        return "memory"
    return None


def plan_declared_retry(
    kind: LimitKind | None, runtime_learnt: bool, mem_learnt: bool, already_retried: bool
) -> bool:
    """Retry at the declared limits: the step was killed at a limit that was learnt, and this is the
    first time for this job."""
    if already_retried or kind is None:
        return False
    return (kind == "time" and runtime_learnt) or (kind == "memory" and mem_learnt)
