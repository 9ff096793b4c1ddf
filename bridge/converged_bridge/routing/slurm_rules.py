"""The Slurm side of routing: which partitions can ever run a step (hard constraints, each refusal with
its reason) and how long it would wait there (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from converged_bridge.api.workflowstep import Backend, Operator
from converged_bridge.routing.candidates import UNVERIFIED_WAIT, Candidate, Refusal
from converged_bridge.routing.types import (
    CapacityView,
    SiteWeights,
    SlurmClusterView,
    SlurmPartitionView,
    StepRequest,
)


def slurm_candidates(
    request: StepRequest,
    capacity: CapacityView,
    weights: SiteWeights,
    out: list[Candidate],
    refusals: list[Refusal],
) -> None:
    if request.operator is not None and request.operator is not Operator.JOB:
        refusals.append(("slurm", "operator {} runs on Kubernetes only", (request.operator.value,)))
        return
    wanted_cluster, wanted_partition = request.slurm_cluster, request.slurm_partition
    before = len(out)
    seen_cluster = False
    for cluster in capacity.slurm:
        if wanted_cluster is not None and cluster.name != wanted_cluster:
            continue
        seen_cluster = True
        if (request.shape.tasks > 1 or request.shape.nodes > 1) and not cluster.mpi:
            refusals.append(
                (f"slurm {cluster.name}", "runs no MPI steps (its SlurmCluster sets mpi: false)", ())
            )
            continue
        if cluster.partitions is None:
            # capacity unknown (no status yet): accepted unverified, and only when nothing verified is left
            target = f"{cluster.name}/{asked_partition(request, cluster) or '(default)'}"
            out.append(
                ((UNVERIFIED_WAIT, False, False, target), Backend.SLURM, cluster, None, None, Operator.JOB)
            )
            continue
        matched = False
        for partition in cluster.partitions:
            if wanted_partition is not None and partition.name != wanted_partition:
                continue
            matched = True
            problem = slurm_misfit(request, partition)
            if problem is not None:
                refusals.append((f"slurm {cluster.name}/{partition.name}", *problem))
                continue
            target = f"{cluster.name}/{partition.name}"
            if not cluster.reachable:  # its capacity is as last seen: no wait to promise, last resort
                out.append(
                    (
                        (UNVERIFIED_WAIT, False, False, target),
                        Backend.SLURM,
                        cluster,
                        partition,
                        None,
                        Operator.JOB,
                    )
                )
                continue
            wait = weights.slurm_startup_seconds + slurm_wait(request, partition, weights)
            spares = request.shape.gpus == 0 and bool(partition.gpus_total)
            key = (wait * weights.slurm, spares, False, target)
            out.append((key, Backend.SLURM, cluster, partition, wait, Operator.JOB))
        if not matched:
            refusals.append((f"slurm {cluster.name}", "has no partition {!r}", (wanted_partition,)))
    if not seen_cluster and len(out) == before:
        named = f" named {wanted_cluster!r}" if wanted_cluster else ""
        refusals.append(("slurm", "no SlurmCluster{}", (named,)))


def slurm_misfit(request: StepRequest, p: SlurmPartitionView) -> tuple[str, tuple[Any, ...]] | None:
    """Why `request` can never run on `p`, as (template, arguments); None when it can."""
    if not p.up:
        return "partition is not UP", ()
    if request.shape.gpus > 0:
        available = gpus_of_model(p.gpus_total, request.shape.gpu_model)
        if available == 0:
            return "no {}GPUs", (f"{request.shape.gpu_model} " if request.shape.gpu_model else "",)
        per_node = -(-available // max(1, p.nodes))  # ceiling: GPU nodes of a partition are alike
        if request.shape.gpus > per_node:
            return "needs {} GPUs per node, nodes have {}", (request.shape.gpus, per_node)
    runtime, limit = request.shape.runtime_minutes, p.max_time_minutes
    if runtime and limit and runtime > limit:
        return "runtime {} min exceeds the time limit {} min", (runtime, limit)
    if request.shape.nodes > p.nodes:
        return "needs {} nodes, has {}", (request.shape.nodes, p.nodes)
    cpus = request.shape.tasks * request.shape.cpus
    if cpus > p.cpus_total:
        return "needs {} CPUs, has {}", (cpus, p.cpus_total)
    if request.shape.mem_mib and p.mem_mib_per_node and request.shape.mem_mib > p.mem_mib_per_node:
        return "needs {} MiB per node, nodes have {}", (request.shape.mem_mib, p.mem_mib_per_node)
    return None


def slurm_fits_idle(request: StepRequest, p: SlurmPartitionView) -> bool:
    if request.shape.tasks * request.shape.cpus > p.cpus_idle:
        return False
    return request.shape.gpus == 0 or request.shape.gpus * request.shape.nodes <= gpus_of_model(
        p.gpus_idle, request.shape.gpu_model
    )


def slurm_wait(request: StepRequest, p: SlurmPartitionView, weights: SiteWeights) -> float:
    """Seconds until the step starts: 0 on idle capacity with nothing pending, else the work queued
    ahead (the pending jobs, plus one for the running ones when it does not fit) over the slots."""
    fits_idle = slurm_fits_idle(request, p)
    if fits_idle and p.pending_jobs == 0:
        return 0.0
    if request.shape.gpus:
        slots = max(1, gpus_of_model(p.gpus_total, request.shape.gpu_model) // request.shape.gpus)
    else:
        slots = max(1, p.cpus_total // max(1, request.shape.tasks * request.shape.cpus))
    return (p.pending_jobs + (0 if fits_idle else 1)) * weights.mean_runtime_seconds / slots


def slurm_wait_text(request: StepRequest, p: SlurmPartitionView, weights: SiteWeights) -> str:
    counts = f"idle {p.cpus_idle}/{p.cpus_total} CPUs"
    if request.shape.gpus:
        idle = gpus_of_model(p.gpus_idle, request.shape.gpu_model)
        counts += f", {idle}/{gpus_of_model(p.gpus_total, request.shape.gpu_model)} GPUs"
    counts += f", {p.pending_jobs} pending"
    wait = slurm_wait(request, p, weights)
    if wait == 0.0:
        return f"fits idle capacity ({counts})"
    return f"expected wait {wait:.0f}s ({counts})"


def gpus_of_model(gpus: Mapping[str, int], model: str | None) -> int:
    if model is None:
        return sum(gpus.values())
    if model in gpus:
        return gpus[model]
    lowered = model.lower()
    return sum(n for m, n in gpus.items() if m.lower() == lowered)


def asked_partition(request: StepRequest, cluster: SlurmClusterView) -> str | None:
    return request.slurm_partition or cluster.default_partition
