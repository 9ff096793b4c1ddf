"""How big and how long an allocation for a group of steps should be, from the plan (pure).

- **Slots** (steps at once): the most of the group's steps the simulated schedule runs at the same time,
  no more than one node (a Slurm partition's node, a Kueue flavor's quota) holds, nor than snakemake's
  `--jobs`. An allocation is one node: its slots are what the plan would have run there anyway.
- **Time limit**: the longest of the group's estimated span (its first step's start to its last step's
  end, waits for other groups included) and its steps' runtimes back to back, plus the agent's idle
  backstop — what it needs if every step uses all of its runtime — within the target's time limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from converged_bridge.schedule.types import ANY_MODEL, Need, Pool, StepEstimate


def count_concurrent(estimates: Sequence[StepEstimate]) -> int:
    """The most of these steps running at one moment (a step ending as another starts does not overlap)."""
    events = sorted([(e.start, 1) for e in estimates] + [(e.end, -1) for e in estimates])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def count_fit(pool: Pool | None, need: Need) -> int | None:
    """How many steps of `need` one slot of `pool` (a node, a flavor) holds at best; None: unknown."""
    if pool is None or not pool.slots:
        return None
    best = 0
    for slot in pool.slots:
        fits = [math.floor(slot.cpus / need.cpus)] if need.cpus > 0 else []
        if need.mem_mib and slot.mem_mib is not None:
            fits.append(math.floor(slot.mem_mib / need.mem_mib))
        if need.gpus:
            model = need.gpu_model
            have = sum(n for m, n in slot.gpus.items() if model is None or m in (model, ANY_MODEL))
            fits.append(have // need.gpus)
        best = max(best, min(fits) if fits else 1)
    return best


def plan_slots(estimates: Sequence[StepEstimate], fit: int | None, cap: int | None = None) -> int:
    """Steps at once in the group's allocation (see the module docstring); at least 1."""
    slots = max(1, count_concurrent(estimates))
    for limit in (fit, cap):
        if limit is not None and limit > 0:
            slots = min(slots, limit)
    return slots


def plan_allocation_minutes(
    estimates: Sequence[StepEstimate],
    runtimes_seconds: Sequence[float],
    idle_seconds: int,
    limit_minutes: int | None = None,
) -> int:
    """The allocation's time limit in whole minutes (see the module docstring)."""
    span = max((e.end for e in estimates), default=0.0) - min((e.start for e in estimates), default=0.0)
    need = max(span, sum(runtimes_seconds)) + idle_seconds
    minutes = max(1, math.ceil(need / 60))
    return min(minutes, limit_minutes) if limit_minutes else minutes
