"""LeaderElector rounds, driven by a clock that starts seconds after boot.

The Kubernetes API is our own edge here (KubeObjects): a one-Lease store stands in for it, and can be
made unreachable to see how long a leader keeps leading without renewing.
"""

from __future__ import annotations

from typing import Any

from converged_bridge.errors import TransientBackendError
from converged_bridge.kube.core import NotFound
from converged_daemon.leader import ElectionSettings, LeaderElector
from tests.unit.clocks import ManualClock

SETTINGS = ElectionSettings(lease_seconds=15, renew_deadline=10.0, retry_period=2.0)


class LeaseStore:
    """KubeObjects' get/create/replace for one Lease; `down` makes every call fail as a lost API server."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise TransientBackendError("connection refused")

    def get(self, *_: Any, **__: Any) -> dict[str, Any]:
        self._check()
        if self.lease is None:
            raise NotFound("leases converged-daemon not found")
        return self.lease

    def create(self, *args: Any, **_: Any) -> dict[str, Any]:
        self._check()
        return self._store(args[-1])

    def replace(self, *args: Any, **_: Any) -> dict[str, Any]:
        self._check()
        return self._store(args[-1])

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        return self.lease


class Elector:
    def __init__(self, store: LeaseStore, clock: ManualClock, identity: str) -> None:
        self.events: list[str] = []
        self.elector = LeaderElector(
            store,  # type: ignore[arg-type]
            identity,
            SETTINGS,
            on_started=lambda: self.events.append("started"),
            on_stopped=lambda: self.events.append("stopped"),
            clock=clock.wall,
            monotonic_clock=clock.monotonic,
        )


def test_before_any_attempt_an_elector_has_not_attempted_recently_even_at_boot() -> None:
    clock = ManualClock(start=0.0)
    e = Elector(LeaseStore(), clock, "a").elector
    assert not e.attempted_within(16.0)  # "never" is not "at monotonic 0"
    e.attempt()
    assert e.attempted_within(16.0) and e.leading


def test_a_leader_that_cannot_renew_stops_leading_at_the_renew_deadline() -> None:
    clock, store = ManualClock(), LeaseStore()
    a = Elector(store, clock, "a")
    a.elector.attempt()
    assert a.events == ["started"]
    store.down = True
    clock.advance(SETTINGS.retry_period)
    a.elector.attempt()
    assert a.elector.leading and not a.elector.reachable  # renewed 2 s ago: still within the deadline
    clock.advance(SETTINGS.renew_deadline - SETTINGS.retry_period)
    a.elector.attempt()
    assert a.events == ["started", "stopped"]


def test_a_follower_takes_over_after_seeing_the_lease_unchanged_for_its_duration() -> None:
    clock, store = ManualClock(), LeaseStore()
    a, b = Elector(store, clock, "a"), Elector(store, clock, "b")
    a.elector.attempt()
    b.elector.attempt()
    assert b.events == [] and store.lease is not None and store.lease["spec"]["holderIdentity"] == "a"
    clock.advance(SETTINGS.lease_seconds - 1)
    b.elector.attempt()
    assert b.events == []  # a silent leader, but not silent for the whole lease yet
    clock.advance(1)
    b.elector.attempt()
    assert b.events == ["started"] and store.lease["spec"]["holderIdentity"] == "b"
