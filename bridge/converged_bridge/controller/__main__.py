"""`converged-controller`: run the WorkflowStep controller as a long-running process."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from dataclasses import fields
from types import FrameType

from converged_bridge.controller.runner import Controller, ControllerSettings
from converged_bridge.kube.access import KubeAccess, load_api_client


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


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


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, ControllerSettings]:
    parser = argparse.ArgumentParser(prog="converged-controller", description=__doc__)
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add_settings_arguments(parser)
    args = parser.parse_args(argv)
    return args, settings_from_args(args)


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    controller = Controller(KubeAccess(load_api_client(args.kubeconfig)), settings)

    def shutdown(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("converged.controller").info("signal %s: stopping", signum)
        controller.stop()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    controller.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
