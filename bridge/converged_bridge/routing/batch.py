"""`route_batch`: a burst of steps routed on one snapshot, each placed step charged as it goes (pure).

Hard constraints depend on totals only, so each distinct request is checked once; after that only the
waits of its candidates move, and only where a step was placed.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from converged_bridge.api.workflowstep import Backend
from converged_bridge.routing.candidates import Candidate, target_of
from converged_bridge.routing.charging import charge_partition, charge_queue
from converged_bridge.routing.kueue_rules import kueue_flavors, kueue_wait
from converged_bridge.routing.route import choose, find_candidates
from converged_bridge.routing.slurm_rules import slurm_wait
from converged_bridge.routing.types import CapacityView, RouteDecision, SiteWeights, StepRequest


def route_batch(
    requests: Sequence[StepRequest], capacity: CapacityView, weights: SiteWeights
) -> list[RouteDecision]:
    """`route` for each of `requests` in order, each placed step charged against the snapshot (see
    `charge`), so a burst of equal steps spreads once its first target fills instead of herding there.

    Hard constraints depend on totals only, so each distinct request is checked once; after that only
    the waits of its candidates move, and only where a step was placed. Equal requests sent to the
    same target with the same expected wait share one decision (and its reason)."""
    batch = _Batch(capacity, weights)
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
    """The snapshot of one `route_batch`, with the steps placed so far charged to their targets, and a
    version per target that moves with every charge."""

    def __init__(self, capacity: CapacityView, weights: SiteWeights) -> None:
        self.capacity = capacity
        self.weights = weights
        self.partitions = {
            (c.name, p.name): p for c in capacity.slurm if c.partitions is not None for p in c.partitions
        }
        self.queues = {q.local_queue: q for q in capacity.kueue}
        self.versions: dict[Any, int] = {}

    def view(self) -> CapacityView:
        slurm = tuple(
            c
            if c.partitions is None
            else replace(c, partitions=tuple(self.partitions[c.name, p.name] for p in c.partitions))
            for c in self.capacity.slurm
        )
        kueue = tuple(self.queues[q.local_queue] for q in self.capacity.kueue)
        return replace(self.capacity, slurm=slurm, kueue=kueue)

    def place(self, request: StepRequest, decision: RouteDecision) -> None:
        if decision.expected_wait_seconds is None:  # refused, or capacity unknown: nothing to charge
            return
        target: Any
        if decision.backend == Backend.SLURM:
            target = (decision.slurm_cluster, decision.slurm_partition)
            self.partitions[target] = charge_partition(self.partitions[target], request, 1)
        else:
            target = decision.local_queue
            self.queues[target] = charge_queue(self.queues[target], request, 1)
        self.versions[target] = self.versions.get(target, 0) + 1

    def refresh(self, request: StepRequest, candidate: Candidate) -> Candidate:
        """`candidate` with its wait and view as the charges so far left them."""
        key, backend, where, partition, wait, operator = candidate
        w = self.weights
        if wait is None:
            return candidate
        if backend == Backend.SLURM:
            partition = self.partitions[where.name, partition.name]
            wait = w.slurm_startup_seconds + slurm_wait(request, partition, w)
            return (wait * w.slurm, *key[1:]), backend, where, partition, wait, operator
        where = self.queues[where.local_queue]
        wait = w.kueue_startup_seconds + kueue_wait(request, where, kueue_flavors(request, where), w)
        return (wait * w.kueue, *key[1:]), backend, where, partition, wait, operator


class _Shape:
    """One distinct request in a `route_batch`: its candidates in a heap by key, each stamped with its
    target's version; a stale key is a lower bound of the real one (charges only lengthen waits), so
    a fresh head is the best candidate."""

    def __init__(self, request: StepRequest, batch: _Batch) -> None:
        self.request = request
        candidates, self.refusals = find_candidates(request, batch.view(), batch.weights)
        self.heap = [(c[0], batch.versions.get(target_of(c), 0), i, c) for i, c in enumerate(candidates)]
        heapq.heapify(self.heap)
        self.refused = None if candidates else choose(request, [], self.refusals, batch.weights)
        self.decisions: dict[tuple[Any, float | None], RouteDecision] = {}  # (target, wait) ->

    def best(self, batch: _Batch) -> RouteDecision:
        if self.refused is not None:
            return self.refused
        heap = self.heap
        while True:
            _, version, i, candidate = heap[0]
            target = target_of(candidate)
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
            decision = choose(self.request, ranked, self.refusals, batch.weights)
            self.decisions[target, candidate[4]] = decision
        return decision
