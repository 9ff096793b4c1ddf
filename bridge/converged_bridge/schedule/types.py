"""The simulated machine, the steps it runs and the schedule it gives (pure data).

A **pool** is what one target offers the run: a Slurm partition (one slot per node) or a Kueue
ClusterQueue (one slot per ResourceFlavor's quota). A step holds a **need** on its pool from the
moment it is placed until it ends: `parts` chunks, each on a different slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_NONE: Mapping[str, int] = MappingProxyType({})
ANY_MODEL = ""  # a slot's GPUs of unknown model serve a step asking for any model


@dataclass(frozen=True)
class Slot:
    """One node of a Slurm partition, or one flavor's quota of a ClusterQueue."""

    cpus: float
    mem_mib: float | None = None  # None: not limited (Kueue quota without memory)
    gpus: Mapping[str, int] = field(default_factory=lambda: _NONE)  # lower-case model -> count


@dataclass(frozen=True)
class Pool:
    """What one target offers: its slots, and how the plan names it."""

    name: str
    slots: tuple[Slot, ...]


@dataclass(frozen=True)
class Machine:
    """The pools, and which pool serves each target (`cluster/partition`, `namespace/queue`).
    Several targets can share a pool: LocalQueues of one ClusterQueue."""

    pools: Mapping[str, Pool] = field(default_factory=dict)
    targets: Mapping[str, str] = field(default_factory=dict)  # target -> pool key

    def pool_of(self, target: str | None) -> str | None:
        """The key of the pool serving `target`; None when its capacity is unknown (not limited)."""
        return self.targets.get(target) if target is not None else None


@dataclass(frozen=True)
class Need:
    """What a step holds while it runs: `parts` chunks on different slots, each of this size."""

    parts: int = 1
    cpus: float = 1.0
    mem_mib: float = 0.0
    gpus: int = 0
    gpu_model: str | None = None  # lower-case; None: any model


@dataclass(frozen=True)
class SimStep:
    """One step as the simulation sees it. It is ready when every `upstream` step has ended (ids
    that are not steps of the simulation count as done), holds `need` on its target's pool for
    `startup_seconds` (submission, admission, container start) and then runs `runtime_seconds`."""

    job_id: int
    target: str | None
    need: Need
    runtime_seconds: float
    upstream: tuple[int, ...] = ()
    startup_seconds: float = 0.0


@dataclass(frozen=True)
class StepEstimate:
    """When a step is ready (its dependencies ended: it is submitted), starts running and ends,
    in seconds from the run's start."""

    job_id: int
    ready: float
    start: float
    end: float


@dataclass(frozen=True)
class Schedule:
    """Every step's estimate; `oversized`: steps bigger than their whole target, simulated alone on
    it; `unlimited`: steps whose target's capacity is unknown, simulated without a limit."""

    estimates: Mapping[int, StepEstimate]
    makespan: float
    oversized: tuple[int, ...] = ()
    unlimited: tuple[int, ...] = ()
