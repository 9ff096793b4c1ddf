"""What steps cost: CPU-, memory- and GPU-hours, per backend and target (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from converged_bridge.api.workflowstep import Resources


@dataclass(frozen=True)
class Usage:
    cpu_hours: float = 0.0
    mem_gib_hours: float = 0.0
    gpu_hours: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.cpu_hours + other.cpu_hours,
            self.mem_gib_hours + other.mem_gib_hours,
            self.gpu_hours + other.gpu_hours,
        )


def build_usage(shape: Resources, seconds: float) -> Usage:
    """A step of `shape` running `seconds`: all its tasks' CPUs, its memory and GPUs on every node."""
    hours = max(0.0, seconds) / 3600
    return Usage(
        cpu_hours=shape.tasks * shape.cpus * hours,
        mem_gib_hours=(shape.mem_mib or 0) * shape.nodes / 1024 * hours,
        gpu_hours=shape.gpus * shape.nodes * hours,
    )


def sum_usage(items: Iterable[tuple[tuple[str, str], Usage]]) -> Mapping[tuple[str, str], Usage]:
    """Usage summed per (backend, target), sorted by backend then target."""
    totals: dict[tuple[str, str], Usage] = {}
    for key, usage in items:
        totals[key] = totals.get(key, Usage()) + usage
    return dict(sorted(totals.items()))
