"""The steps this run has placed that the capacity snapshot cannot show yet, charged on top of it.

The router decides from a snapshot of SlurmCluster statuses (rewritten by the resource daemon once per
mirror cycle) and ClusterQueue usage, read every `capacity_refresh` seconds. Steps placed since then
are not in it, so without this every step of a burst would go where the first did. Each placement is
charged against the snapshot (`converged_bridge.routing.charge`) until its step finishes or
`settle_seconds` have passed — by then the controller has submitted it and the daemon (or Kueue) has
counted it in the capacity the next snapshot reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from converged_bridge.routing import CapacityView, RouteDecision, SiteWeights, StepRequest, charge, route


@dataclass(frozen=True)
class _Placed:
    at: float
    request: StepRequest
    decision: RouteDecision


class Placements:
    def __init__(
        self, weights: SiteWeights, settle_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._weights = weights
        self._settle = settle_seconds
        self._clock = clock
        self._placed: dict[str, _Placed] = {}
        self._snapshot: CapacityView | None = None
        self._view: CapacityView | None = None

    def route(self, request: StepRequest, snapshot: CapacityView) -> RouteDecision:
        """`route` on `snapshot` with this run's unsettled placements charged."""
        return route(request, self.view(snapshot), self._weights)

    def view(self, snapshot: CapacityView) -> CapacityView:
        if snapshot is not self._snapshot or self._view is None:
            now = self._clock()
            self._placed = {n: p for n, p in self._placed.items() if now - p.at < self._settle}
            view = snapshot
            for p in self._placed.values():
                view = charge(view, p.request, p.decision)
            self._snapshot, self._view = snapshot, view
        return self._view

    def placed(self, name: str, request: StepRequest, decision: RouteDecision) -> None:
        """Step `name` went where `decision` says: charge it from now on."""
        self._placed[name] = _Placed(self._clock(), request, decision)
        if self._view is not None:
            self._view = charge(self._view, request, decision)

    def finished(self, name: str) -> None:
        """Step `name` ended: the next snapshot no longer carries it (its capacity is free again)."""
        if self._placed.pop(name, None) is not None:
            self._view = None  # rebuilt from the snapshot at the next route

    def __len__(self) -> int:
        return len(self._placed)
