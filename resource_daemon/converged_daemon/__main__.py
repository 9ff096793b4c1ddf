"""`converged-daemon`: the mirror loop and the WorkflowStep controller, behind leader election.

Every replica serves /healthz, /readyz and /metrics; only the one holding the coordination Lease runs
the mirror loop and the controller (and so writes). SIGTERM stops both, releases the Lease so a standby
takes over at once, and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import fields
from types import FrameType

from converged_bridge.controller.runner import Controller
from converged_bridge.controller.settings import add_settings_arguments, settings_from_args
from converged_bridge.jsonlog import JsonFormatter
from converged_bridge.kube.core import KubeCore, load_api_client
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.kube.secrets import SecretKeys
from converged_bridge.timing import Monotonic, due, monotonic
from converged_bridge.wire import CONTROLLER_FIELD_MANAGER
from converged_daemon.leader import ElectionSettings, LeaderElector
from converged_daemon.metrics import DaemonMetrics
from converged_daemon.mirror import Mirror, MirrorSettings
from converged_daemon.names import FIELD_MANAGER

log = logging.getLogger("converged.daemon")

HELP = {
    "interval": "seconds between mirror cycles",
    "partition_refresh_cycles": "re-read Slurm partitions (limits, state) every this many cycles",
    "node_lease_renew": "seconds between heartbeats of each virtual Node's Lease",
    "node_lease_seconds": "duration of the virtual Nodes' heartbeat Leases",
    "status_refresh": "rewrite an unchanged SlurmCluster status this often at most (seconds)",
    "clusters": "mirror only these SlurmClusters (comma-separated; default all)",
    "slurm_wait": "seconds a cycle waits for the clusters' answers; a later answer is planned next cycle",
    "namespace": "namespace of the leader-election Lease",
    "name": "name of the leader-election Lease",
    "lease_seconds": "a silent leader is replaced after this many seconds",
    "renew_deadline": "a leader that could not renew for this many seconds stops leading",
    "retry_period": "seconds between leader-election attempts",
}


class Daemon:
    """What the leader runs: the mirror loop (a thread) and, unless disabled, the controller."""

    def __init__(
        self,
        api_client: object,
        mirror_settings: MirrorSettings,
        args: argparse.Namespace,
        monotonic_clock: Monotonic = monotonic,
    ) -> None:
        self._monotonic = monotonic_clock
        self.metrics = DaemonMetrics()
        self._api = api_client
        self._mirror_settings = mirror_settings
        self._args = args
        self._controller_core = KubeCore(api_client, field_manager=CONTROLLER_FIELD_MANAGER)
        self._objects = KubeObjects(KubeCore(api_client, field_manager=FIELD_MANAGER))
        self._lock = threading.Lock()
        self.mirror: Mirror | None = None
        self._mirror_thread: threading.Thread | None = None
        self._controller: Controller | None = None
        self._leading_since: float | None = None  # monotonic; None while not leading

    def start_leading(self) -> None:
        with self._lock:
            self.metrics.leader.set(1)
            self._leading_since = self._monotonic()
            self.mirror = Mirror(
                self._objects, SecretKeys(self._objects), self._mirror_settings, metrics=self.metrics
            )
            self._mirror_thread = threading.Thread(
                target=self.mirror.run, name="converged-mirror", daemon=True
            )
            self._mirror_thread.start()
            if not self._args.no_controller:
                settings = settings_from_args(self._args, prefix="controller-")
                self._controller = Controller.connect(self._controller_core, settings)
                self._controller.start()

    def stop_leading(self) -> None:
        with self._lock:
            self.metrics.leader.set(0)
            if self.mirror is not None:
                self.mirror.stop()
            if self._mirror_thread is not None:
                self._mirror_thread.join(30)
            if self.mirror is not None:
                self.mirror.close()
            if self._controller is not None:
                self._controller.stop()
            self.mirror, self._mirror_thread, self._controller = None, None, None
            self._leading_since = None

    def alive(self) -> bool:
        """Live unless the leader's mirror loop has stopped cycling (three intervals and a margin)."""
        mirror = self.mirror
        if mirror is None:
            return True
        # before its first cycle ends, the loop has had since leadership began
        last = mirror.last_cycle_end if mirror.last_cycle_end is not None else self._leading_since
        if last is None:  # leadership is being handed over this instant
            return True
        return not due(last, self._monotonic(), 3 * self._mirror_settings.interval + 60)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, MirrorSettings, ElectionSettings]:
    parser = argparse.ArgumentParser(prog="converged-daemon", description=__doc__)
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        help="this replica's name in the leader Lease (default: $POD_NAME, else host-pid)",
    )
    parser.add_argument("--health-address", default="0.0.0.0", help="address of /healthz, /readyz, /metrics")  # noqa: S104
    parser.add_argument(
        "--health-port", type=int, default=8080, help="port of /healthz, /readyz, /metrics (0: any)"
    )
    parser.add_argument("--no-controller", action="store_true", help="run the mirror loop only")
    add_settings_arguments(parser, prefix="controller-")
    for group, prefix in ((MirrorSettings, ""), (ElectionSettings, "lease-")):
        defaults = group()
        for f in fields(group):
            default = getattr(defaults, f.name)
            flag = f"--{prefix}{f.name.replace('_', '-')}".replace("lease-lease-", "lease-")
            if isinstance(default, tuple):
                parser.add_argument(flag, dest=f.name, default="", help=HELP[f.name])
            else:
                parser.add_argument(flag, dest=f.name, type=type(default), default=default, help=HELP[f.name])
    args = parser.parse_args(argv)
    args.clusters = tuple(c for c in args.clusters.split(",") if c)
    mirror = MirrorSettings(**{f.name: getattr(args, f.name) for f in fields(MirrorSettings)})
    election = ElectionSettings(**{f.name: getattr(args, f.name) for f in fields(ElectionSettings)})
    return args, mirror, election


def main(argv: list[str] | None = None) -> int:
    from converged_daemon.health import HealthServer

    args, mirror_settings, election_settings = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Slurm request otherwise

    api = load_api_client(args.kubeconfig)
    daemon = Daemon(api, mirror_settings, args)
    elector = LeaderElector(
        KubeObjects(KubeCore(api, field_manager=FIELD_MANAGER)),
        args.identity,
        election_settings,
        on_started=daemon.start_leading,
        on_stopped=daemon.stop_leading,
    )

    def ready() -> bool:
        return elector.reachable and elector.attempted_within(3 * election_settings.retry_period + 10)

    health = HealthServer(
        (args.health_address, args.health_port), daemon.metrics.registry, alive=daemon.alive, ready=ready
    )
    health.start()
    log.info("converged-daemon %s serving health on port %d", args.identity, health.port)

    def shutdown(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signum)
        elector.stop()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    elector.run()  # returns after stop(), having stopped leading and released the Lease
    health.stop()
    log.info("converged-daemon %s stopped", args.identity)
    return 0


if __name__ == "__main__":
    sys.exit(main())
