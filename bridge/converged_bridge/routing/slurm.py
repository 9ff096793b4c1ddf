"""Slurm as the router sees it (pure): its candidates (`slurm_rules`), the decision that sends a step to
a partition, what a placed step takes from it, and the partitions as pools of nodes for the plan."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator
from dataclasses import replace

from converged_bridge.api.workflowstep import Backend, Resources, WorkflowStep
from converged_bridge.routing.candidates import Candidate, Refusal
from converged_bridge.routing.charging import charge_partition
from converged_bridge.routing.pools import Need, Pool, Slot
from converged_bridge.routing.slurm_rules import (
    asked_partition,
    slurm_candidates,
    slurm_wait,
    slurm_wait_text,
)
from converged_bridge.routing.types import (
    CapacityView,
    Decision,
    RouteDecision,
    SiteWeights,
    SlurmPartitionView,
    StepRequest,
)


class SlurmRules:
    backend = Backend.SLURM
    targets_named = "Slurm cluster"

    def candidates(
        self,
        request: StepRequest,
        capacity: CapacityView,
        weights: SiteWeights,
        out: list[Candidate],
        refusals: list[Refusal],
    ) -> None:
        slurm_candidates(request, capacity, weights, out, refusals)

    def startup_seconds(self, weights: SiteWeights) -> float:
        return weights.slurm_startup_seconds

    def names_target(self, request: StepRequest) -> bool:
        return bool(request.slurm_partition)

    def target(self, candidate: Candidate) -> Hashable:
        _, _, cluster, partition, _, _ = candidate
        return (cluster.name, partition.name if partition is not None else None)

    def summary(self, request: StepRequest, candidate: Candidate, weights: SiteWeights) -> str:
        key, _, cluster, partition, _, _ = candidate
        if partition is None:
            return f"slurm {key[3]}: capacity unknown (SlurmCluster has no status yet), accepted unverified"
        if not cluster.reachable:
            return (
                f"slurm {key[3]}: cluster unreachable at the daemon's last look (capacity as last seen), "
                "accepted unverified: the step waits until the cluster answers"
            )
        return f"slurm {key[3]}: {slurm_wait_text(request, partition, weights)}"

    def decide(
        self, request: StepRequest, candidate: Candidate, decision: Decision, reason: str
    ) -> RouteDecision:
        _, backend, cluster, partition, wait, operator = candidate
        name = partition.name if partition is not None else asked_partition(request, cluster)
        return RouteDecision(
            backend=backend,
            decision=decision,
            reason=reason,
            operator=operator,
            slurm_cluster=cluster.name,
            slurm_partition=name,
            expected_wait_seconds=wait,
            target=f"{cluster.name}/{name or '(default)'}",
        )

    def step_target(self, step: WorkflowStep) -> str:
        slurm = step.spec.slurm
        cluster = slurm.cluster if slurm else None
        return f"{cluster}/{(slurm.partition if slurm else None) or '(default)'}"

    def charge(
        self, capacity: CapacityView, request: StepRequest, decision: RouteDecision, count: int
    ) -> CapacityView:
        clusters = tuple(
            replace(
                c,
                partitions=tuple(
                    charge_partition(p, request, count) if p.name == decision.slurm_partition else p
                    for p in c.partitions
                ),
            )
            if c.name == decision.slurm_cluster and c.partitions is not None
            else c
            for c in capacity.slurm
        )
        return replace(capacity, slurm=clusters)

    def ledger(self, capacity: CapacityView, weights: SiteWeights) -> SlurmLedger:
        return SlurmLedger(capacity, weights)

    def pools(self, capacity: CapacityView) -> Iterator[tuple[str, Pool, tuple[str, ...]]]:
        """One pool per partition with a known status: its nodes."""
        for cluster in capacity.slurm:
            for partition in cluster.partitions or ():
                target = f"{cluster.name}/{partition.name}"
                yield f"slurm:{target}", Pool(name=target, slots=build_node_slots(partition)), (target,)

    def need(self, shape: Resources) -> Need:
        """A chunk per node: its tasks' CPUs, memory and GPUs per node."""
        return Need(
            parts=shape.nodes,
            cpus=math.ceil(shape.tasks / shape.nodes) * shape.cpus,
            mem_mib=shape.mem_mib or 0,
            gpus=shape.gpus,
            gpu_model=shape.gpu_model.lower() if shape.gpu_model else None,
        )


class SlurmLedger:
    """The partitions of one burst, charged as steps are placed."""

    def __init__(self, capacity: CapacityView, weights: SiteWeights) -> None:
        self.weights = weights
        self.partitions = {
            (c.name, p.name): p for c in capacity.slurm if c.partitions is not None for p in c.partitions
        }

    def place(self, request: StepRequest, decision: RouteDecision) -> Hashable:
        target = (decision.slurm_cluster or "", decision.slurm_partition or "")
        self.partitions[target] = charge_partition(self.partitions[target], request, 1)
        return target

    def refresh(self, request: StepRequest, candidate: Candidate) -> Candidate:
        key, backend, cluster, partition, wait, operator = candidate
        if wait is None:
            return candidate
        w = self.weights
        partition = self.partitions[cluster.name, partition.name]
        wait = w.slurm_startup_seconds + slurm_wait(request, partition, w)
        return (wait * w.slurm, *key[1:]), backend, cluster, partition, wait, operator

    def view(self, capacity: CapacityView) -> CapacityView:
        slurm = tuple(
            c
            if c.partitions is None
            else replace(c, partitions=tuple(self.partitions[c.name, p.name] for p in c.partitions))
            for c in capacity.slurm
        )
        return replace(capacity, slurm=slurm)


def build_node_slots(partition: SlurmPartitionView) -> tuple[Slot, ...]:
    """The partition's nodes, its totals shared out evenly (the first nodes get the remainders)."""
    n = partition.nodes
    if n <= 0:
        return ()
    cpus = _share(partition.cpus_total, n)
    gpus = {model.lower(): _share(count, n) for model, count in partition.gpus_total.items()}
    return tuple(
        Slot(
            cpus=cpus[i],
            mem_mib=partition.mem_mib_per_node,
            gpus={model: shares[i] for model, shares in gpus.items() if shares[i]},
        )
        for i in range(n)
    )


def _share(total: int, n: int) -> list[int]:
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


SLURM_RULES = SlurmRules()
