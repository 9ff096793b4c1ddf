"""The backend units a controller drives, each registered once under its backend's name.

The runner and the allocation driver reach a backend only through the units built here
(`base.BackendUnit`); a third backend is its folder under `backends/` and one entry in
`UNIT_FACTORIES` (its routing side is registered in `routing.registry`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import Backend
from converged_bridge.backends.base import BackendUnit
from converged_bridge.backends.kueue import KueueBackend
from converged_bridge.backends.slurm import SlurmBackend
from converged_bridge.backends.slurm.unit import TransportFactory
from converged_bridge.controller.settings import ControllerSettings
from converged_bridge.kube.kueue_api import KueueApi
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.kube.secrets import SecretKeys
from converged_bridge.kube.steps import WorkflowSteps
from converged_bridge.slurm.connect import build_transport
from converged_bridge.timing import Monotonic, WallClock


@dataclass(frozen=True)
class UnitContext:
    """What a unit is built from: the controller's Kubernetes client, settings and clocks."""

    objects: KubeObjects
    settings: ControllerSettings
    clock: WallClock
    monotonic_clock: Monotonic
    transport_factory: TransportFactory = build_transport  # how Slurm units reach a cluster
    # what a unit calls when its steps' backend objects changed (wake(backend)(): an early cycle)
    wake: Callable[[Backend], Callable[[], None]] | None = None


UnitFactory = Callable[[UnitContext], BackendUnit]

__all__ = ["UNIT_FACTORIES", "TransportFactory", "UnitContext", "UnitFactory", "build_units"]


def build_slurm_unit(context: UnitContext) -> BackendUnit:
    steps = WorkflowSteps(context.objects)

    def read_clusters() -> dict[str, SlurmClusterSpec]:
        clusters = {}
        for obj in steps.list_slurm_clusters():
            try:
                clusters[obj["metadata"]["name"]] = SlurmClusterSpec.model_validate(obj.get("spec", {}))
            except ValidationError:
                continue  # the daemon reports an invalid SlurmCluster in its status
        return clusters

    settings = context.settings
    return SlurmBackend(
        read_clusters,
        SecretKeys(context.objects),
        log_dir=settings.log_dir,
        cluster_refresh=settings.cluster_refresh,
        transport_factory=context.transport_factory,
        clock=context.clock,
        monotonic_clock=context.monotonic_clock,
        allocation_spool=settings.allocation_spool or None,
    )


def build_kueue_unit(context: UnitContext) -> BackendUnit:
    return KueueBackend(
        context.objects,
        context.settings.kueue_site(),
        workloads=KueueApi(context.objects).workloads,
        clock=context.clock,
        allocation_spool=context.settings.allocation_spool or None,
        wake=context.wake(Backend.KUEUE) if context.wake else None,
    )


# The one registration of each backend's unit.
UNIT_FACTORIES: Mapping[Backend, UnitFactory] = {
    Backend.SLURM: build_slurm_unit,
    Backend.KUEUE: build_kueue_unit,
}


def build_units(
    context: UnitContext, factories: Mapping[Backend, UnitFactory] = UNIT_FACTORIES
) -> dict[Backend, BackendUnit]:
    """One unit per registered backend, over one Kubernetes client."""
    return {backend: build(context) for backend, build in factories.items()}
