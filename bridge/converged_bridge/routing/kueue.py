"""Kueue as the router sees it (pure): its candidates (`kueue_rules`), the decision that sends a step to
a LocalQueue, what a placed step takes from its quota, and the ClusterQueues as pools for the plan."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import replace

from converged_bridge.api.workflowstep import Backend, Resources, WorkflowStep
from converged_bridge.routing.candidates import Candidate, Refusal
from converged_bridge.routing.charging import charge_queue
from converged_bridge.routing.kueue_rules import kueue_candidates, kueue_flavors, kueue_wait, kueue_wait_text
from converged_bridge.routing.pools import ANY_MODEL, Need, Pool, Slot
from converged_bridge.routing.types import (
    CapacityView,
    Decision,
    KueueQueueView,
    RouteDecision,
    SiteWeights,
    StepRequest,
)


class KueueRules:
    backend = Backend.KUEUE
    targets_named = "Kueue queue"

    def candidates(
        self,
        request: StepRequest,
        capacity: CapacityView,
        weights: SiteWeights,
        out: list[Candidate],
        refusals: list[Refusal],
    ) -> None:
        kueue_candidates(request, capacity, weights, out, refusals)

    def startup_seconds(self, weights: SiteWeights) -> float:
        return weights.kueue_startup_seconds

    def names_target(self, request: StepRequest) -> bool:
        return False  # a LocalQueue is a setting's default as often as the step's own choice

    def target(self, candidate: Candidate) -> Hashable:
        queue: KueueQueueView = candidate[2]
        return queue.local_queue

    def summary(self, request: StepRequest, candidate: Candidate, weights: SiteWeights) -> str:
        key, _, queue, _, _, _ = candidate
        return f"kueue {key[3]}: {kueue_wait_text(request, queue, weights)}"

    def decide(
        self, request: StepRequest, candidate: Candidate, decision: Decision, reason: str
    ) -> RouteDecision:
        _, backend, queue, _, wait, operator = candidate
        return RouteDecision(
            backend=backend,
            decision=decision,
            reason=reason,
            operator=operator,
            local_queue=queue.local_queue,
            expected_wait_seconds=wait,
            target=queue.local_queue or "-",
        )

    def step_target(self, step: WorkflowStep) -> str:
        queue = step.spec.kueue.local_queue if step.spec.kueue else None
        return f"{step.metadata.namespace or '-'}/{queue or '(default)'}"

    def charge(
        self, capacity: CapacityView, request: StepRequest, decision: RouteDecision, count: int
    ) -> CapacityView:
        queues = tuple(
            charge_queue(q, request, count) if q.local_queue == decision.local_queue else q
            for q in capacity.kueue
        )
        return replace(capacity, kueue=queues)

    def ledger(self, capacity: CapacityView, weights: SiteWeights) -> KueueLedger:
        return KueueLedger(capacity, weights)

    def pools(self, capacity: CapacityView) -> Iterator[tuple[str, Pool, tuple[str, ...]]]:
        """One pool per ClusterQueue behind a LocalQueue: its flavors' nominal quota (no memory quota in
        the snapshot: memory does not limit Kueue steps here)."""
        for queue in capacity.kueue:
            slots = tuple(
                Slot(
                    cpus=f.cpu_quota_milli / 1000,
                    gpus={(f.gpu_model or ANY_MODEL).lower(): f.gpu_quota} if f.gpu_quota else {},
                )
                for f in queue.flavors
            )
            pool = Pool(name=f"ClusterQueue {queue.cluster_queue}", slots=slots)
            yield f"kueue:{queue.cluster_queue}", pool, (queue.local_queue,)

    def need(self, shape: Resources) -> Need:
        """One charge against a flavor's quota: all pods' CPUs and GPUs."""
        return Need(
            parts=1,
            cpus=shape.tasks * shape.cpus,
            mem_mib=(shape.mem_mib or 0) * shape.nodes,
            gpus=shape.gpus * shape.nodes,
            gpu_model=shape.gpu_model.lower() if shape.gpu_model else None,
        )


class KueueLedger:
    """The LocalQueues of one burst, charged as steps are placed."""

    def __init__(self, capacity: CapacityView, weights: SiteWeights) -> None:
        self.weights = weights
        self.queues = {q.local_queue: q for q in capacity.kueue}

    def place(self, request: StepRequest, decision: RouteDecision) -> Hashable:
        target = decision.local_queue
        assert target is not None
        self.queues[target] = charge_queue(self.queues[target], request, 1)
        return target

    def refresh(self, request: StepRequest, candidate: Candidate) -> Candidate:
        key, backend, queue, partition, wait, operator = candidate
        if wait is None:
            return candidate
        w = self.weights
        queue = self.queues[queue.local_queue]
        wait = w.kueue_startup_seconds + kueue_wait(request, queue, kueue_flavors(request, queue), w)
        return (wait * w.kueue, *key[1:]), backend, queue, partition, wait, operator

    def view(self, capacity: CapacityView) -> CapacityView:
        return replace(capacity, kueue=tuple(self.queues[q.local_queue] for q in capacity.kueue))


KUEUE_RULES = KueueRules()
