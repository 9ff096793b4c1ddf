"""`route_batch`: a burst of steps routed on one snapshot, each placed step charged as it goes; `charge`:
one decision's steps counted against a snapshot (pure). Both reach a target through its backend's rules.

A snapshot does not know the steps routed since it was read: `charge` counts a placed step against it
(idle CPUs, GPUs or free quota while they last, then one more queued job), so a burst of equal steps
fills its best target and then spreads to the next instead of herding onto the first.

Hard constraints depend on totals only, so each distinct request is checked once; after that only the
waits of its candidates move, and only where a step was placed.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Sequence
from typing import Any

from converged_bridge.routing.candidates import Candidate
from converged_bridge.routing.registry import STANDARD_RULES, RuleBook, UnknownBackend
from converged_bridge.routing.route import choose, find_candidates
from converged_bridge.routing.types import CapacityView, RouteDecision, SiteWeights, StepRequest


def charge(
    capacity: CapacityView,
    request: StepRequest,
    decision: RouteDecision,
    count: int = 1,
    rules: RuleBook = STANDARD_RULES,
) -> CapacityView:
    """`capacity` with `count` steps like `request` placed where `decision` sends them: on idle capacity
    (or free quota) while it lasts, the rest queued behind the pending work. Pure; a refusal or an
    unverified decision changes nothing."""
    if decision.backend is None or decision.expected_wait_seconds is None or count <= 0:
        return capacity
    return rules.rules_for(decision.backend).charge(capacity, request, decision, count)


def route_batch(
    requests: Sequence[StepRequest],
    capacity: CapacityView,
    weights: SiteWeights,
    rules: RuleBook = STANDARD_RULES,
) -> list[RouteDecision]:
    """`route` for each of `requests` in order, each placed step charged against the snapshot (see
    `charge`), so a burst of equal steps spreads once its first target fills instead of herding there.

    Hard constraints depend on totals only, so each distinct request is checked once; after that only
    the waits of its candidates move, and only where a step was placed. Equal requests sent to the
    same target with the same expected wait share one decision (and its reason)."""
    batch = _Batch(capacity, weights, rules)
    shapes: dict[StepRequest, _Shape] = {}
    out = []
    for request in requests:
        shape = shapes.get(request)
        if shape is None:
            shape = shapes[request] = _Shape(request, batch)
        decision = shape.best(batch)
        out.append(decision)
        batch.place(request, decision)
    return out


class _Batch:
    """The snapshot of one `route_batch`, with the steps placed so far charged to their targets (in each
    backend's ledger), and a version per target that moves with every charge."""

    def __init__(self, capacity: CapacityView, weights: SiteWeights, rules: RuleBook) -> None:
        self.capacity = capacity
        self.weights = weights
        self.rules = rules
        self.ledgers = {r.backend: r.ledger(capacity, weights) for r in rules}
        self.versions: dict[Hashable, int] = {}

    def view(self) -> CapacityView:
        view = self.capacity
        for ledger in self.ledgers.values():
            view = ledger.view(view)
        return view

    def target_of(self, candidate: Candidate) -> Hashable:
        return candidate[1], self.rules.rules_for(candidate[1]).target(candidate)

    def place(self, request: StepRequest, decision: RouteDecision) -> None:
        if decision.backend is None or decision.expected_wait_seconds is None:
            return  # refused, or capacity unknown: nothing to charge
        ledger = self.ledgers.get(decision.backend)
        if ledger is None:  # an unknown backend is an error, never another backend's ledger
            raise UnknownBackend(decision.backend, self.rules.names())
        target = decision.backend, ledger.place(request, decision)
        self.versions[target] = self.versions.get(target, 0) + 1

    def refresh(self, request: StepRequest, candidate: Candidate) -> Candidate:
        """`candidate` with its wait and view as the charges so far left them."""
        return self.ledgers[candidate[1]].refresh(request, candidate)


class _Shape:
    """One distinct request in a `route_batch`: its candidates in a heap by key, each stamped with its
    target's version; a stale key is a lower bound of the real one (charges only lengthen waits), so
    a fresh head is the best candidate."""

    def __init__(self, request: StepRequest, batch: _Batch) -> None:
        self.request = request
        candidates, self.refusals = find_candidates(request, batch.view(), batch.weights, batch.rules)
        self.targets = [batch.target_of(c) for c in candidates]  # a candidate's target never changes
        self.heap = [(c[0], batch.versions.get(self.targets[i], 0), i, c) for i, c in enumerate(candidates)]
        heapq.heapify(self.heap)
        self.refused = None if candidates else choose(request, [], self.refusals, batch.weights, batch.rules)
        self.decisions: dict[tuple[Any, float | None], RouteDecision] = {}  # (target, wait) ->

    def best(self, batch: _Batch) -> RouteDecision:
        if self.refused is not None:
            return self.refused
        heap = self.heap
        while True:
            _, version, i, candidate = heap[0]
            target = self.targets[i]
            now = batch.versions.get(target, 0)
            if version == now:
                break
            fresh = batch.refresh(self.request, candidate)
            heapq.heapreplace(heap, (fresh[0], now, i, fresh))
        decision = self.decisions.get((target, candidate[4]))
        if decision is None:  # a new target, or a new wait there: the reason tells the state now
            ranked = [candidate]
            if len(heap) > 1:
                runner_up = min(heap[1:3])[3]  # the second smallest of a heap; its key may be stale
                ranked.append(batch.refresh(self.request, runner_up))
            decision = choose(self.request, ranked, self.refusals, batch.weights, batch.rules)
            self.decisions[target, candidate[4]] = decision
        return decision
