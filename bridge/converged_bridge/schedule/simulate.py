"""`simulate_schedule`: list scheduling of a DAG on the simulated machine (pure).

At time 0 and whenever a step ends, the ready steps are considered in priority order and each one
whose pool has room is placed (a step that does not fit waits; one behind it that fits starts: no
target idles while a ready step fits it). The priority is the longest path from the step to the end
of the DAG, its own duration included (critical path / HLFET); ties go to the lower job id, so the
same input always gives the same schedule. Steps with the same pool and need wait in one queue, so
a decision point costs one look per distinct (pool, need), not per ready step.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from converged_bridge.schedule.types import (
    ANY_MODEL,
    Machine,
    Need,
    Pool,
    Schedule,
    SimStep,
    StepEstimate,
)

# what a placed step holds: (slot index, cpus, mem, {model: gpus}) per part
Allocation = tuple[tuple[int, float, float, tuple[tuple[str, int], ...]], ...]
_EXCLUSIVE: Allocation = ()


@dataclass
class _PoolState:
    """The free part of each slot of a pool, and whether one step holds the pool alone."""

    pool: Pool
    cpus: list[float] = field(init=False)
    mem: list[float] = field(init=False)
    gpus: list[dict[str, int]] = field(init=False)
    running: int = 0
    exclusive: bool = False

    def __post_init__(self) -> None:
        self.cpus = [s.cpus for s in self.pool.slots]
        self.mem = [float("inf") if s.mem_mib is None else s.mem_mib for s in self.pool.slots]
        self.gpus = [dict(s.gpus) for s in self.pool.slots]

    def place(self, need: Need) -> Allocation | None:
        """Take `need` from the first slots that fit it (first fit, slot order); None when it does not fit."""
        if self.exclusive:
            return None
        parts: list[tuple[int, float, float, tuple[tuple[str, int], ...]]] = []
        for i in range(len(self.cpus)):
            if len(parts) == need.parts:
                break
            if self.cpus[i] < need.cpus or self.mem[i] < need.mem_mib:
                continue
            taken = _take_gpus(self.gpus[i], need.gpus, need.gpu_model)
            if taken is None:
                continue
            parts.append((i, need.cpus, need.mem_mib, taken))
        if len(parts) < need.parts:
            return None
        for i, cpus, mem, taken in parts:
            self.cpus[i] -= cpus
            self.mem[i] -= mem
            for model, n in taken:
                self.gpus[i][model] -= n
        self.running += 1
        return tuple(parts)

    def place_alone(self) -> Allocation | None:
        """The whole pool for a step bigger than it, once nothing else runs there."""
        if self.running:
            return None
        self.exclusive = True
        self.running = 1
        return _EXCLUSIVE

    def release(self, allocation: Allocation) -> None:
        self.running -= 1
        if allocation is _EXCLUSIVE:
            self.exclusive = False
            return
        for i, cpus, mem, taken in allocation:
            self.cpus[i] += cpus
            self.mem[i] += mem
            for model, n in taken:
                self.gpus[i][model] += n


def _take_gpus(free: Mapping[str, int], n: int, model: str | None) -> tuple[tuple[str, int], ...] | None:
    """Which GPUs of a slot `n` GPUs of `model` would take (any model when None; a slot's GPUs of
    unknown model serve any request), most free first; None when the slot has too few."""
    if n == 0:
        return ()
    usable = sorted(
        ((m, c) for m, c in free.items() if c > 0 and (model is None or m in (model, ANY_MODEL))),
        key=lambda mc: (-mc[1], mc[0]),
    )
    taken = []
    for m, c in usable:
        if n == 0:
            break
        take = min(n, c)
        taken.append((m, take))
        n -= take
    return tuple(taken) if n == 0 else None


def order_steps(steps: Sequence[SimStep]) -> tuple[list[int], dict[int, list[int]]]:
    """A topological order of the steps (lowest job id first among the ready) and each step's children.
    Raises ValueError on a repeated job id or a cycle."""
    ids = {s.job_id for s in steps}
    if len(ids) != len(steps):
        raise ValueError("job ids must be unique")
    children: dict[int, list[int]] = {s.job_id: [] for s in steps}
    waiting = {s.job_id: 0 for s in steps}
    for s in steps:
        for up in set(s.upstream):
            if up in ids and up != s.job_id:
                children[up].append(s.job_id)
                waiting[s.job_id] += 1
    ready = [j for j, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        job = heapq.heappop(ready)
        order.append(job)
        for child in children[job]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    if len(order) != len(steps):
        raise ValueError("the steps' dependencies form a cycle")
    return order, children


def simulate_schedule(
    steps: Sequence[SimStep], machine: Machine, *, max_running: int | None = None
) -> Schedule:
    """Every step's estimated ready, start and end times and the makespan (see the module docstring).

    `max_running` caps how many steps hold resources at once (snakemake's `--jobs`)."""
    by_id = {s.job_id: s for s in steps}
    order, children = order_steps(steps)
    rank: dict[int, float] = {}
    for job in reversed(order):
        s = by_id[job]
        rank[job] = s.startup_seconds + s.runtime_seconds + max((rank[c] for c in children[job]), default=0.0)
    pools = {key: _PoolState(pool) for key, pool in machine.pools.items()}
    # a need bigger than its whole (empty) pool runs alone on it
    alone: dict[tuple[str, Need], bool] = {}
    for s in steps:
        key = machine.pool_of(s.target)
        if key is not None and key in pools and (key, s.need) not in alone:
            probe = _PoolState(pools[key].pool)
            alone[(key, s.need)] = probe.place(s.need) is None
    waiting = {s.job_id: 0 for s in steps}
    for kids in children.values():
        for kid in kids:
            waiting[kid] += 1
    Bucket = tuple[str | None, Need]
    queues: dict[Bucket, list[tuple[float, int]]] = {}
    ready_at: dict[int, float] = {}
    estimates: dict[int, StepEstimate] = {}
    running: list[tuple[float, int]] = []
    held: dict[int, tuple[str | None, Allocation | None]] = {}

    def make_ready(job: int, now: float) -> None:
        s = by_id[job]
        pool = machine.pool_of(s.target)
        bucket = (pool if pool in pools else None, s.need)
        queues.setdefault(bucket, [])
        heapq.heappush(queues[bucket], (-rank[job], job))
        ready_at[job] = now

    def start_ready(now: float) -> None:
        heads = [(queue[0], bucket) for bucket, queue in queues.items() if queue]
        heapq.heapify(heads)
        while heads and (max_running is None or len(running) < max_running):
            _, bucket = heapq.heappop(heads)
            pool, need = bucket
            allocation: Allocation | None = None
            if pool is not None:
                state = pools[pool]
                allocation = state.place_alone() if alone[(pool, need)] else state.place(need)
                if allocation is None:
                    continue  # nothing of this queue fits until a step ends
            queue = queues[bucket]
            _, job = heapq.heappop(queue)
            s = by_id[job]
            start = now + s.startup_seconds
            end = start + s.runtime_seconds
            estimates[job] = StepEstimate(job, ready_at[job], start, end)
            held[job] = (pool, allocation)
            heapq.heappush(running, (end, job))
            if queue:
                heapq.heappush(heads, (queue[0], bucket))

    for job in order:
        if waiting[job] == 0:
            make_ready(job, 0.0)
    now = 0.0
    start_ready(now)
    while running:
        now = running[0][0]
        while running and running[0][0] <= now:
            _, job = heapq.heappop(running)
            pool, allocation = held.pop(job)
            if pool is not None and allocation is not None:
                pools[pool].release(allocation)
            for kid in children[job]:
                waiting[kid] -= 1
                if waiting[kid] == 0:
                    make_ready(kid, now)
        start_ready(now)
    return Schedule(
        estimates=estimates,
        makespan=max((e.end for e in estimates.values()), default=0.0),
        oversized=tuple(
            sorted(s.job_id for s in steps if alone.get((machine.pool_of(s.target) or "", s.need), False))
        ),
        unlimited=tuple(sorted(s.job_id for s in steps if machine.pool_of(s.target) not in pools)),
    )
