"""The Kueue side of routing: which LocalQueues can ever admit a step (operator installed, an image, a
flavor whose quota can hold it) and how long it would wait there (pure)."""

from __future__ import annotations

from typing import Any

from converged_bridge.api.workflowstep import Backend, Operator
from converged_bridge.handover.build import rule_image_problem
from converged_bridge.routing.candidates import Candidate, Refusal
from converged_bridge.routing.types import (
    MPI_OPERATORS,
    CapacityView,
    KueueFlavorView,
    KueueQueueView,
    SiteWeights,
    StepRequest,
)


def kueue_candidates(
    request: StepRequest,
    capacity: CapacityView,
    weights: SiteWeights,
    out: list[Candidate],
    refusals: list[Refusal],
) -> None:
    operator = request.operator or (Operator.MPIJOB if request.mpi else Operator.JOB)
    if operator not in capacity.operators:
        refusals.append(("kueue", "operator {} is not installed", (operator.value,)))
        return
    if request.mpi and operator not in MPI_OPERATORS:
        refusals.append(("kueue", "MPI needs operator mpijob or minicluster, not {}", (operator.value,)))
        return
    if not request.has_image:
        refusals.append(("kueue", "no container image (set the image setting or converged_image)", ()))
        return
    if request.rule_images and operator != Operator.JOB:
        refusals.append(
            ("kueue", "a step in its rule's own image runs as a batch Job, not {}", (operator.value,))
        )
        return
    for url in request.rule_images:
        problem = rule_image_problem(url)
        if problem is not None:
            refusals.append(("kueue", "{}", (problem,)))
            return
    found = False
    for queue in capacity.kueue:
        if request.local_queue is not None and queue.local_queue != request.local_queue:
            continue
        found = True
        flavors = kueue_flavors(request, queue) if queue.active else []
        if not flavors:
            refusals.append((f"kueue {queue.local_queue}", *kueue_misfit(request, queue)))
            continue
        wait = weights.kueue_startup_seconds + kueue_wait(request, queue, flavors, weights)
        key = (wait * weights.kueue, False, True, queue.local_queue)
        out.append((key, Backend.KUEUE, queue, None, wait, operator))
    if not found:
        named = f" {request.local_queue!r}" if request.local_queue else ""
        refusals.append(("kueue", "no LocalQueue{}", (named,)))


def kueue_flavors(request: StepRequest, q: KueueQueueView) -> list[KueueFlavorView]:
    """The flavors whose quota can ever hold the step (and that have its GPU model)."""
    cpu_milli = request.shape.tasks * request.shape.cpus * 1000
    gpus = request.shape.gpus * request.shape.nodes
    memory = memory_mib(request)
    model = request.shape.gpu_model.lower() if request.shape.gpu_model else None
    return [
        f
        for f in q.flavors
        if f.cpu_quota_milli >= cpu_milli
        and f.gpu_quota >= gpus
        and (f.memory_quota_mib is None or f.memory_quota_mib >= memory)
        and (not gpus or model is None or (f.gpu_model or "").lower() == model)
    ]


def memory_mib(request: StepRequest) -> int:
    """The memory the step asks of a ClusterQueue: its memory per node on each of its nodes."""
    return (request.shape.mem_mib or 0) * request.shape.nodes


def kueue_misfit(request: StepRequest, q: KueueQueueView) -> tuple[str, tuple[Any, ...]]:
    """Why no flavor of `q` can ever hold `request` (called once `kueue_flavors` found none)."""
    if not q.active:
        return "ClusterQueue {} is not active", (q.cluster_queue,)
    if request.shape.gpus:
        model = request.shape.gpu_model.lower() if request.shape.gpu_model else None
        if not any(
            f.gpu_quota > 0 and (model is None or (f.gpu_model or "").lower() == model) for f in q.flavors
        ):
            return "no flavor with {}GPUs", (
                f"{request.shape.gpu_model} " if request.shape.gpu_model else "",
            )
    memory = memory_mib(request)
    quotas = [f.memory_quota_mib for f in q.flavors if f.memory_quota_mib is not None]
    if memory and quotas and all(quota < memory for quota in quotas):
        return "needs {} MiB of memory, the largest flavor quota is {} MiB", (memory, max(quotas))
    return "needs {} CPUs{}, no flavor has that quota", (
        request.shape.tasks * request.shape.cpus,
        f" and {request.shape.gpus * request.shape.nodes} GPUs" if request.shape.gpus else "",
    )


def kueue_free_flavor(request: StepRequest, flavors: list[KueueFlavorView]) -> KueueFlavorView | None:
    cpu_milli = request.shape.tasks * request.shape.cpus * 1000
    gpus = request.shape.gpus * request.shape.nodes
    memory = memory_mib(request)
    for f in flavors:
        if (
            f.cpu_quota_milli - f.cpu_used_milli >= cpu_milli
            and f.gpu_quota - f.gpu_used >= gpus
            and (f.memory_quota_mib is None or f.memory_quota_mib - f.memory_used_mib >= memory)
        ):
            return f
    return None


def kueue_wait(
    request: StepRequest, q: KueueQueueView, flavors: list[KueueFlavorView], weights: SiteWeights
) -> float:
    """Like `slurm_wait`: 0 when a flavor has free quota and nothing is pending, else the workloads
    ahead over the slots of the largest fitting flavor."""
    free = kueue_free_flavor(request, flavors)
    if free is not None and q.pending_workloads == 0:
        return 0.0
    biggest = max(f.cpu_quota_milli for f in flavors)
    slots = max(1, biggest // (request.shape.tasks * request.shape.cpus * 1000 or 1))
    return (q.pending_workloads + (0 if free is not None else 1)) * weights.mean_runtime_seconds / slots


def kueue_wait_text(request: StepRequest, q: KueueQueueView, weights: SiteWeights) -> str:
    counts = f"{q.pending_workloads} pending, {q.admitted_workloads} admitted"
    flavors = kueue_flavors(request, q)
    free = kueue_free_flavor(request, flavors)
    if free is not None and q.pending_workloads == 0:
        return f"fits free quota of flavor {free.name} ({counts})"
    return f"expected wait {kueue_wait(request, q, flavors, weights):.0f}s ({counts})"
