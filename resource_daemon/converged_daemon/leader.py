"""The leader elector: keeps trying for the Lease, calls back when leadership starts and stops.

One process of several leads; only the leader runs the mirror loop and the WorkflowStep controller.
A leader that cannot renew within `renew_deadline` stops leading before its Lease can expire, so two
processes never write at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from converged_bridge.errors import BackendError
from converged_bridge.kube.core import NotFound
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.timing import Monotonic, WallClock, due, monotonic, utc_now
from converged_bridge.wire import LEASES
from converged_daemon.election import LeaseRecord, Step, build_lease, decide, parse_lease

log = logging.getLogger("converged.daemon.leader")


@dataclass(frozen=True)
class ElectionSettings:
    namespace: str = "converged-system"  # where the Lease lives
    name: str = "converged-daemon"  # the Lease's name
    lease_seconds: int = 15  # a silent leader is replaced after this long
    renew_deadline: float = 10.0  # a leader that could not renew this long steps down
    retry_period: float = 2.0  # seconds between attempts


class LeaderElector:
    def __init__(
        self,
        objects: KubeObjects,
        identity: str,
        settings: ElectionSettings,
        *,
        on_started: Callable[[], None],
        on_stopped: Callable[[], None],
        clock: WallClock = utc_now,
        monotonic_clock: Monotonic = monotonic,
    ) -> None:
        self._objects = objects
        self.identity = identity
        self._s = settings
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._clock = clock
        self._monotonic = monotonic_clock
        self._stop = threading.Event()
        self._seen: tuple[tuple[str | None, str | None], float] | None = None  # record key, first seen
        self._last_renew: float | None = None  # monotonic; None: never renewed
        self.leading = False
        self.reachable = False  # the API server answered the last attempt
        self.last_attempt: float | None = None  # monotonic; None: no attempt yet

    def run(self) -> None:
        """Until stop(): try, and start or stop leading as the Lease says."""
        while not self._stop.is_set():
            self.attempt()
            self._stop.wait(self._s.retry_period)
        if self.leading:
            self.leading = False
            self._on_stopped()
            self._release()

    def attempt(self) -> None:
        """One round: read the Lease, take or renew it if we may, start or stop leading."""
        self.last_attempt = self._monotonic()
        try:
            holds = self._try()
            self.reachable = True
        except BackendError as e:
            self.reachable = False
            # unreachable: keep leading only while our last renewal is younger than the deadline
            holds = self.leading and not due(self._last_renew, self._monotonic(), self._s.renew_deadline)
            log.warning("leader election: %s", e)
        if holds and not self.leading:
            log.info("%s: started leading", self.identity)
            self.leading = True
            self._on_started()
        elif not holds and self.leading:
            log.warning("%s: stopped leading", self.identity)
            self.leading = False
            self._on_stopped()

    def stop(self) -> None:
        self._stop.set()

    def attempted_within(self, seconds: float) -> bool:
        """The last attempt to lead (won or not) began less than `seconds` ago; False before the first."""
        return not due(self.last_attempt, self._monotonic(), seconds)

    def _read(self) -> LeaseRecord | None:
        try:
            obj = self._objects.get(LEASES, self._s.name, namespace=self._s.namespace)
        except NotFound:
            return None
        return parse_lease(obj)

    def _try(self) -> bool:
        record = self._read()
        now = self._monotonic()
        if record is not None and (self._seen is None or self._seen[0] != record.key):
            self._seen = (record.key, now)
        observed_for = now - self._seen[1] if self._seen else 0.0
        step = decide(record, self.identity, observed_for)
        if step == Step.FOLLOW:
            return False
        body = build_lease(
            self._s.name, self._s.namespace, self.identity, self._clock(), self._s.lease_seconds, record
        )
        if step == Step.CREATE:
            self._objects.create(LEASES, body, namespace=self._s.namespace)
        else:  # renew or acquire: fails with Conflict when another process wrote first
            self._objects.replace(LEASES, self._s.name, body, namespace=self._s.namespace)
        self._last_renew = self._monotonic()
        return True

    def _release(self) -> None:
        """Give the Lease up on shutdown so a standby takes over at once."""
        try:
            record = self._read()
            if record is not None and record.holder == self.identity:
                body = build_lease(self._s.name, self._s.namespace, None, self._clock(), 1, record)
                self._objects.replace(LEASES, self._s.name, body, namespace=self._s.namespace)
                log.info("%s: released the lease", self.identity)
        except BackendError as e:
            log.warning("releasing the lease failed: %s", e)
