"""How the controller runs, its command-line flags, and the backend units it drives."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import timedelta

from converged_bridge.api.workflowstep import Backend
from converged_bridge.backends.base import BackendUnit
from converged_bridge.backends.kueue import KueueBackend
from converged_bridge.backends.kueue.operators import KueueSite
from converged_bridge.backends.slurm import SlurmBackend
from converged_bridge.backends.slurm.unit import TransportFactory
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.kube.secrets import SecretKeys
from converged_bridge.kube.steps import WorkflowSteps
from converged_bridge.slurm.connect import build_transport
from converged_bridge.timing import Monotonic, WallClock
from converged_bridge.wire import CONTROLLER_LABEL


@dataclass(frozen=True)
class ControllerSettings:
    """How the controller runs. Every field has a command-line flag of the same name."""

    poll_interval: float = 2.0  # seconds between Slurm job listings (one query per cluster)
    pending_reason_refresh: float = 30.0  # seconds: a waiting step's new reason alone is written this rarely
    apply_workers: int = 4  # threads applying a cycle's plans (a burst of new steps); 1: on the loop thread
    cluster_refresh: float = 30.0  # seconds between re-reads of SlurmCluster objects
    namespace: str | None = None  # watch one namespace, or all
    label_selector: str = f"!{CONTROLLER_LABEL}"  # which steps are ours (default: not an embedded run's)
    log_dir: str = "/tmp/converged"  # where Slurm logs go for steps without a workingDir
    watch_timeout: int = 300  # seconds a WATCH stays open before it is renewed
    local_queue: str = "default"  # Kueue LocalQueue for steps that name none
    shared_paths: str = ""  # comma-separated host directories mounted at the same path in every pod
    image_pull_policy: str = "IfNotPresent"  # for the containers of Kubernetes-backed steps
    allocation_spool: str = ""  # the controller's own directory for StepAllocation spools ("": the run's)
    finished_run_ttl: float = 7 * 24 * 3600.0  # seconds a finished run's steps are kept; < 0: forever
    retention_interval: float = 60.0  # seconds between looks for finished runs past their retention

    def default_run_ttl(self) -> timedelta | None:
        return None if self.finished_run_ttl < 0 else timedelta(seconds=self.finished_run_ttl)

    def kueue_site(self) -> KueueSite:
        paths = tuple(p for p in self.shared_paths.split(",") if p)
        return KueueSite(
            default_local_queue=self.local_queue, shared_paths=paths, image_pull_policy=self.image_pull_policy
        )


SETTING_HELP = {
    "poll_interval": "seconds between Slurm job listings (one query per cluster)",
    "pending_reason_refresh": "seconds: a waiting step's new reason alone is written at most this often",
    "apply_workers": "threads that apply a poll cycle's plans (1: all on the loop thread)",
    "cluster_refresh": "seconds between re-reads of SlurmCluster objects",
    "namespace": "watch only this namespace (default: all)",
    "label_selector": "steps this controller drives (default: all but runs with an embedded controller)",
    "log_dir": "directory for Slurm logs of steps without a workingDir",
    "watch_timeout": "seconds a WATCH stays open before it is renewed",
    "local_queue": "Kueue LocalQueue for Kubernetes-backed steps that name none",
    "shared_paths": "comma-separated host directories mounted at the same path in every step pod",
    "image_pull_policy": "imagePullPolicy of step containers (IfNotPresent, Never, Always)",
    "allocation_spool": "a directory on the shared filesystem, writable by this controller and readable "
    "by its users, for the hand-over to StepAllocations (default: in each run's directory, which only a "
    "controller running as the user or as root may write)",
    "finished_run_ttl": "seconds a finished run's WorkflowSteps are kept (every step terminal), unless "
    "they set spec.ttlSecondsAfterFinished; negative: kept until deleted by hand",
    "retention_interval": "seconds between looks for finished runs past their retention",
}


def add_settings_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """One `--<prefix><field>` flag per ControllerSettings field (the daemon uses prefix "controller-")."""
    defaults = ControllerSettings()
    for f in fields(ControllerSettings):
        default = getattr(defaults, f.name)
        parser.add_argument(
            f"--{prefix}{f.name.replace('_', '-')}",
            dest=_dest(prefix, f.name),
            type=type(default) if default is not None else str,
            default=default,
            help=SETTING_HELP[f.name],
        )


def settings_from_args(args: argparse.Namespace, prefix: str = "") -> ControllerSettings:
    return ControllerSettings(
        **{f.name: getattr(args, _dest(prefix, f.name)) for f in fields(ControllerSettings)}
    )


def _dest(prefix: str, name: str) -> str:
    return prefix.replace("-", "_") + name


def build_units(
    objects: KubeObjects,
    settings: ControllerSettings,
    clock: WallClock,
    monotonic_clock: Monotonic,
    transport_factory: TransportFactory = build_transport,
    wake: Callable[[Backend], Callable[[], None]] | None = None,
) -> dict[Backend, BackendUnit]:
    """The backend units a controller drives, over one Kubernetes client; `wake(backend)` is what a
    unit calls when its steps' backend objects changed (the Kueue unit's informers)."""
    from converged_bridge.api.slurmcluster import SlurmClusterSpec
    from converged_bridge.kube.kueue_api import KueueApi

    steps = WorkflowSteps(objects)
    kueue = KueueApi(objects)

    def read_clusters() -> dict[str, SlurmClusterSpec]:
        from pydantic import ValidationError

        clusters = {}
        for obj in steps.list_slurm_clusters():
            try:
                clusters[obj["metadata"]["name"]] = SlurmClusterSpec.model_validate(obj.get("spec", {}))
            except ValidationError:
                continue  # the daemon reports an invalid SlurmCluster in its status
        return clusters

    return {
        Backend.SLURM: SlurmBackend(
            read_clusters,
            SecretKeys(objects),
            log_dir=settings.log_dir,
            cluster_refresh=settings.cluster_refresh,
            transport_factory=transport_factory,
            clock=clock,
            monotonic_clock=monotonic_clock,
            allocation_spool=settings.allocation_spool or None,
        ),
        Backend.KUEUE: KueueBackend(
            objects,
            settings.kueue_site(),
            workloads=kueue.workloads,
            clock=clock,
            allocation_spool=settings.allocation_spool or None,
            wake=wake(Backend.KUEUE) if wake else None,
        ),
    }
