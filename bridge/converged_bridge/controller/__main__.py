"""`converged-controller`: run the WorkflowStep controller as a long-running process."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from converged_bridge.controller.runner import Controller
from converged_bridge.controller.settings import (
    ControllerSettings,
    add_settings_arguments,
    settings_from_args,
)
from converged_bridge.jsonlog import JsonFormatter
from converged_bridge.kube.core import KubeCore, load_api_client
from converged_bridge.wire import CONTROLLER_FIELD_MANAGER


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
    core = KubeCore(load_api_client(args.kubeconfig), field_manager=CONTROLLER_FIELD_MANAGER)
    controller = Controller.connect(core, settings)

    def shutdown(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("converged.controller").info("signal %s: stopping", signum)
        controller.stop()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    controller.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
