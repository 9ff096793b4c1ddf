"""The mirror loop: each cycle, Slurm -> CapacitySnapshot -> plan() -> server-side applies.

Per cycle, reads: one LIST each of SlurmClusters, the daemon's Nodes, ResourceFlavors and
ClusterQueues (label selector), and per SlurmCluster one capacity query (2 Slurm requests; 3 every
`partition_refresh_cycles` cycles, see the transports' `query_capacity`). Writes: only what plan()
returns — nothing when nothing changed — plus the Lease heartbeat of each virtual Node every
`node_lease_renew` seconds, so the node-lifecycle controller keeps them Ready.

The clusters are queried side by side, and a cycle waits at most `slurm_wait` seconds for them: a
cluster whose slurmrestd is slow to answer (it waits MessageTimeout for a slurmctld that is down) is
planned by the cycle after its answer arrives, and no other cluster's mirror waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.errors import BackendError
from converged_bridge.kube.kueue_api import KueueApi
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.slurm.capacity import CapacitySnapshot, CapacitySource
from converged_bridge.slurm.connect import build_transport
from converged_bridge.slurm.tokens import SecretReader
from converged_bridge.slurm.transport import SlurmTransport
from converged_bridge.timing import Monotonic, WallClock, due, monotonic, utc_now
from converged_bridge.wire import LEASES, NODE_LEASE_NAMESPACE, NODES, SLURM_CLUSTERS
from converged_daemon import names
from converged_daemon.actions import Action, Apply, Delete, ObjectRef
from converged_daemon.election import micro_time
from converged_daemon.metrics import DaemonMetrics
from converged_daemon.observed import ObservedObjects, group_observed, parse_status
from converged_daemon.plan import PlanSettings, Reading, SlurmUnreachable, plan, plan_orphans

log = logging.getLogger("converged.daemon.mirror")
TransportFactory = Callable[[str, SlurmClusterSpec, SecretReader], SlurmTransport]


@dataclass(frozen=True)
class MirrorSettings:
    """How the mirror loop runs. Every field has a command-line flag of the same name."""

    interval: float = 10.0  # seconds between cycles
    partition_refresh_cycles: int = 6  # re-read partition limits/state every this many cycles
    node_lease_renew: float = 10.0  # seconds between heartbeats of a virtual Node's Lease
    node_lease_seconds: int = 40  # the heartbeat Lease's duration (the node-monitor grace period)
    status_refresh: float = 300.0  # rewrite an unchanged SlurmCluster status this often at most
    clusters: tuple[str, ...] = field(default=())  # mirror only these SlurmClusters; all when empty
    slurm_wait: float = 5.0  # seconds a cycle waits for Slurm's answers; later ones go to the next cycle


@dataclass
class CycleReport:
    """What one cycle did, for logs, tests and benchmarks."""

    writes: list[str] = field(default_factory=list)  # "apply nodes x", "delete resourceflavors y"
    errors: list[str] = field(default_factory=list)
    snapshots: dict[str, CapacitySnapshot | SlurmUnreachable] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # query parsing + planning, all clusters


class Mirror:
    def __init__(
        self,
        objects: KubeObjects,
        read_secret: SecretReader,
        settings: MirrorSettings | None = None,
        *,
        metrics: DaemonMetrics | None = None,
        transport_factory: TransportFactory = build_transport,
        kueue: KueueApi | None = None,
        clock: WallClock = utc_now,
        monotonic_clock: Monotonic = monotonic,
    ) -> None:
        self._objects = objects
        self._kueue = kueue or KueueApi(objects)  # the Kueue version, negotiated on first use
        self._read_secret = read_secret
        self.settings = settings or MirrorSettings()
        self._metrics = metrics or DaemonMetrics()
        self._transport_factory = transport_factory
        self._clock = clock
        self._monotonic = monotonic_clock
        self._transports: dict[str, tuple[SlurmTransport, SlurmClusterSpec]] = {}
        self._apply_errors: dict[str, str] = {}
        self._node_uids: dict[str, str] = {}  # written by cycles, read by the heartbeat thread
        # (node name, uid) -> monotonic time of its last heartbeat: a recreated Node is a new key,
        # and a key that is absent was never renewed (due at once, however young the clock is)
        self._renewed: dict[tuple[str, str], float] = {}
        # cluster -> its capacity query under way (with the CPU seconds its parsing took), kept across
        # cycles until it answers: one query at a time per cluster
        self._reading: dict[str, Future[tuple[Reading, float]]] = {}
        self._readers = ThreadPoolExecutor(4, "converged-slurm-read")
        self.cycles = 0
        self.last_cycle_end: float | None = None  # monotonic; None before the first cycle ends
        self._stop = threading.Event()

    # --- hosting ---
    def run(self) -> None:
        """Cycles every `interval` seconds until stop(); heartbeats run in a thread of their own, so a
        cycle waiting on an unreachable Slurm never lets the node-lifecycle controller mark Nodes Unknown."""
        self._stop.clear()
        beats = threading.Thread(target=self._heartbeat_loop, name="converged-heartbeat", daemon=True)
        beats.start()
        while not self._stop.is_set():
            started = self._monotonic()
            try:
                report = self.cycle()
                if report.writes or report.errors:
                    log.info(
                        "cycle %d: %d writes, %d errors%s",
                        self.cycles,
                        len(report.writes),
                        len(report.errors),
                        f": {report.errors[0]}" if report.errors else "",
                    )
            except Exception:
                log.exception("mirror cycle failed; continuing")
            self._stop.wait(max(0.0, self.settings.interval - (self._monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.settings.node_lease_renew)):
            try:
                self.heartbeat()
            except Exception:
                log.exception("heartbeat failed; continuing")

    def close(self) -> None:
        self._readers.shutdown(wait=False, cancel_futures=True)
        for transport, _ in self._transports.values():
            transport.close()
        self._transports.clear()

    # --- one cycle ---
    def cycle(self) -> CycleReport:
        started = self._monotonic()
        report = CycleReport()
        clusters = self._objects.list_objects(SLURM_CLUSTERS)
        kueue = self._kueue.version
        observed = group_observed(
            self._objects.list_objects(NODES, label_selector=names.MANAGED_SELECTOR),
            self._objects.list_objects(self._kueue.resource_flavors(), label_selector=names.MANAGED_SELECTOR),
            self._objects.list_objects(self._kueue.cluster_queues(), label_selector=names.MANAGED_SELECTOR),
        )
        served = [
            str(c["metadata"]["name"])
            for c in clusters
            if not self.settings.clusters or c["metadata"]["name"] in self.settings.clusters
        ]
        self._track_nodes(observed, served)
        refresh = self.cycles % max(1, self.settings.partition_refresh_cycles) == 0
        specs: dict[str, tuple[dict[str, Any], SlurmClusterSpec]] = {}
        for obj in clusters:
            name = str(obj["metadata"]["name"])
            if name not in served:
                continue
            try:
                specs[name] = obj, SlurmClusterSpec.model_validate(obj.get("spec") or {})
            except ValidationError as e:
                report.errors.append(f"SlurmCluster {name} is invalid: {e.errors()[0]['msg']}")
        for name, (_, spec) in specs.items():
            if name not in self._reading:
                self._reading[name] = self._start_reading(name, spec, refresh)
        wait([self._reading[n] for n in specs], timeout=self.settings.slurm_wait)
        for name, (obj, spec) in specs.items():
            if not self._reading[name].done():
                log.info("SlurmCluster %s: Slurm has not answered yet; planned when it does", name)
                continue
            reading, cpu_seconds = self._reading.pop(name).result()
            cpu = time.thread_time()
            actions = plan(
                name,
                spec,
                reading,
                observed.cluster(names.label_value(name), parse_status(obj)),
                generation=int(obj["metadata"].get("generation") or 0),
                now=self._clock(),
                apply_error=self._apply_errors.get(name),
                settings=PlanSettings(
                    status_refresh_seconds=self.settings.status_refresh, kueue_version=kueue
                ),
            )
            cpu_seconds += time.thread_time() - cpu
            report.cpu_seconds += cpu_seconds
            self._metrics.plan_cpu_seconds.observe(cpu_seconds)
            report.snapshots[name] = reading
            self._record(name, reading)
            errors = self.execute(actions, report)
            if errors:
                self._apply_errors[name] = errors[0]
            else:
                self._apply_errors.pop(name, None)
        report.errors += self.execute(
            plan_orphans([c["metadata"]["name"] for c in clusters], observed, kueue), report
        )
        self.cycles += 1
        self.last_cycle_end = ended = self._monotonic()
        self._metrics.cycles.inc()
        self._metrics.cycle_seconds.observe(ended - started)
        return report

    def _track_nodes(self, observed: ObservedObjects, served: Collection[str]) -> None:
        """The Nodes whose Lease this daemon renews: those of the clusters it serves, as listed now.

        A Node of another daemon's cluster is never kept alive from here, and a Node deleted behind our
        back is forgotten (its Lease would name an owner that is gone, for the garbage collector)."""
        uids = {
            name: str(node["metadata"].get("uid", ""))
            for cluster in served
            for name, node in observed.cluster(names.label_value(cluster)).nodes.items()
        }
        self._node_uids = uids
        self._renewed = {key: t for key, t in self._renewed.items() if uids.get(key[0]) == key[1]}

    def _start_reading(
        self, name: str, spec: SlurmClusterSpec, refresh: bool
    ) -> Future[tuple[Reading, float]]:
        """Cluster `name`'s capacity query, on a reader thread (its transport made here, on the loop's)."""
        try:
            transport = self._transport(name, spec)
        except BackendError as e:
            done: Future[tuple[Reading, float]] = Future()
            done.set_result((self._unreachable(name, e), 0.0))
            return done
        return self._readers.submit(self._read_slurm, name, transport, spec, refresh)

    def _read_slurm(
        self, name: str, transport: SlurmTransport, spec: SlurmClusterSpec, refresh: bool
    ) -> tuple[Reading, float]:
        """(the reading, the CPU seconds of this thread it took: parsing, not waiting)."""
        cpu = time.thread_time()
        try:
            if not isinstance(transport, CapacitySource):
                return SlurmUnreachable(f"the {spec.transport} transport cannot report capacity"), 0.0
            reading: Reading = transport.query_capacity(refresh_partitions=refresh)
        except BackendError as e:
            reading = self._unreachable(name, e)
        except ValueError as e:  # a SlurmParseError: an answer we cannot read is no capacity either
            log.warning("SlurmCluster %s: unreadable answer: %s", name, e)
            reading = SlurmUnreachable(f"unreadable Slurm answer: {e}")
        return reading, time.thread_time() - cpu

    @staticmethod
    def _unreachable(name: str, error: BackendError) -> SlurmUnreachable:
        log.warning("SlurmCluster %s: Slurm unreachable: %s", name, error)
        return SlurmUnreachable(str(error))

    def _transport(self, name: str, spec: SlurmClusterSpec) -> SlurmTransport:
        held = self._transports.get(name)
        if held is not None and held[1] == spec:
            return held[0]
        if held is not None:
            held[0].close()
        transport = self._transport_factory(name, spec, self._read_secret)
        self._transports[name] = (transport, spec)
        return transport

    def _record(self, cluster: str, reading: Reading) -> None:
        m = self._metrics
        if isinstance(reading, SlurmUnreachable):
            m.slurm_reachable.labels(cluster).set(0)
            return
        m.slurm_reachable.labels(cluster).set(1)
        for p in reading.partitions:
            for kind, r in (("total", p.total), ("idle", p.idle)):
                m.partition_cpus.labels(cluster, p.name, kind).set(r.cpus)
                m.partition_gpus.labels(cluster, p.name, kind).set(r.gpu_total)
            m.pending_jobs.labels(cluster, p.name).set(p.pending_jobs)

    # --- the one place that writes ---
    def execute(self, actions: list[Action], report: CycleReport) -> list[str]:
        """Apply `actions` in order; a failed one is reported and the rest still run."""
        errors = []
        for action in actions:
            ref = action.ref
            try:
                if isinstance(action, Apply):
                    result = self._apply(ref, action)
                    if ref.plural == "nodes":
                        self._node_uids[ref.name] = str(result.get("metadata", {}).get("uid", ""))
                    report.writes.append(
                        f"apply{'/' + action.subresource if action.subresource else ''} {ref}"
                    )
                    self._metrics.writes.labels(f"apply-{ref.plural}").inc()
                elif isinstance(action, Delete):
                    self._delete(ref)
                    report.writes.append(f"delete {ref}")
                    self._metrics.writes.labels(f"delete-{ref.plural}").inc()
                    if ref.plural == "nodes":
                        self._node_uids.pop(ref.name, None)
                log.debug("%s %s (%s)", type(action).__name__, ref, action.reason)
            except BackendError as e:
                errors.append(f"{type(action).__name__.lower()} {ref}: {e}")
                self._metrics.write_errors.inc()
                log.warning("%s %s failed: %s", type(action).__name__, ref, e)
        report.errors += errors
        return errors

    def _apply(self, ref: ObjectRef, action: Apply) -> dict[str, Any]:
        return self._objects.apply(
            ref.kind, ref.name, action.body, namespace=ref.namespace, subresource=action.subresource
        )

    def _delete(self, ref: ObjectRef) -> None:
        self._objects.delete(ref.kind, ref.name, namespace=ref.namespace)  # gone already: done

    def heartbeat(self) -> int:
        """Renew the Lease of every virtual Node whose last renewal is `node_lease_renew` old."""
        now = self._monotonic()
        renewed = 0
        for name, uid in sorted(dict(self._node_uids).items()):
            if not uid or not due(self._renewed.get((name, uid)), now, self.settings.node_lease_renew):
                continue
            body = build_node_lease(name, uid, self._clock(), self.settings.node_lease_seconds)
            try:
                self._objects.apply(LEASES, name, body, namespace=NODE_LEASE_NAMESPACE)
            except BackendError as e:
                log.warning("heartbeat of node %s failed: %s", name, e)
                continue
            self._renewed[name, uid] = now
            renewed += 1
            self._metrics.heartbeats.inc()
        return renewed


def build_node_lease(node: str, uid: str, now: datetime, duration_seconds: int) -> dict[str, Any]:
    """A virtual Node's heartbeat Lease, owned by the Node (deleted with it), as the kubelet keeps one."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": NODE_LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}],
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": micro_time(now),
        },
    }
