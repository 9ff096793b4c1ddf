"""How the controller runs and its command-line flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from converged_bridge.backends.kueue.operators import KueueSite
from converged_bridge.backends.kueue.operators.shared import parse_shared_volumes
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
    # the shared filesystem in every pod: comma-separated PATH[=CLAIM], the namespace's claim CLAIM
    # (default converged-shared) mounted at PATH, the same path as on the Slurm nodes
    shared_paths: str = ""
    image_pull_policy: str = "IfNotPresent"  # for the containers of Kubernetes-backed steps
    allocation_spool: str = ""  # the controller's own directory for StepAllocation spools ("": the run's)
    finished_run_ttl: float = 7 * 24 * 3600.0  # seconds a finished run's steps are kept; < 0: forever
    retention_interval: float = 60.0  # seconds between looks for finished runs past their retention

    def default_run_ttl(self) -> timedelta | None:
        return None if self.finished_run_ttl < 0 else timedelta(seconds=self.finished_run_ttl)

    def kueue_site(self) -> KueueSite:
        """The Kueue backend's site; ValueError when `shared_paths` is not PATH[=CLAIM],..."""
        return KueueSite(
            default_local_queue=self.local_queue,
            shared_volumes=parse_shared_volumes(self.shared_paths),
            image_pull_policy=self.image_pull_policy,
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
    "shared_paths": "the shared filesystem in every step pod: comma-separated PATH[=CLAIM], the step "
    "namespace's PersistentVolumeClaim CLAIM (default converged-shared) mounted at PATH",
    "image_pull_policy": "imagePullPolicy of step containers (IfNotPresent, Never, Always)",
    "allocation_spool": "a directory on the shared filesystem, writable by this controller and readable "
    "by its users, for the hand-over to StepAllocations (default: in each run's directory, which only a "
    "controller running as the user or as root may write)",
    "finished_run_ttl": "seconds a finished run's WorkflowSteps are kept (every step terminal), unless "
    "they set spec.ttlSecondsAfterFinished; negative: kept until deleted by hand",
    "retention_interval": "seconds between looks for finished runs past their retention",
}


def _shared_paths(text: str) -> str:
    """The flag's value when it parses (argparse reports the ValueError's message otherwise)."""
    try:
        parse_shared_volumes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


_CHECKED: dict[str, Callable[[str], Any]] = {"shared_paths": _shared_paths}


def add_settings_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """One `--<prefix><field>` flag per ControllerSettings field (the daemon uses prefix "controller-")."""
    defaults = ControllerSettings()
    for f in fields(ControllerSettings):
        default = getattr(defaults, f.name)
        parser.add_argument(
            f"--{prefix}{f.name.replace('_', '-')}",
            dest=_dest(prefix, f.name),
            type=_CHECKED.get(f.name) or (type(default) if default is not None else str),
            default=default,
            help=SETTING_HELP[f.name],
        )


def settings_from_args(args: argparse.Namespace, prefix: str = "") -> ControllerSettings:
    return ControllerSettings(
        **{f.name: getattr(args, _dest(prefix, f.name)) for f in fields(ControllerSettings)}
    )


def _dest(prefix: str, name: str) -> str:
    return prefix.replace("-", "_") + name
