"""What a target offers a run's plan and what a step holds on it (pure data), built by each backend's
routing side (`BackendRules.pools`, `BackendRules.need`) and simulated by `converged_bridge.schedule`.

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
class Need:
    """What a step holds while it runs: `parts` chunks on different slots, each of this size."""

    parts: int = 1
    cpus: float = 1.0
    mem_mib: float = 0.0
    gpus: int = 0
    gpu_model: str | None = None  # lower-case; None: any model
