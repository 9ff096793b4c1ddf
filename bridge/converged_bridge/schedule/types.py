"""The simulated machine, the steps it runs and the schedule it gives (pure data).

A **pool** is what one target offers the run, a **need** what a step holds on it while it runs; both
are built by each backend's routing side and defined with it (`converged_bridge.routing.pools`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from converged_bridge.routing.pools import ANY_MODEL, Need, Pool, Slot

__all__ = ["ANY_MODEL", "Machine", "Need", "Pool", "Schedule", "SimStep", "Slot", "StepEstimate"]


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
