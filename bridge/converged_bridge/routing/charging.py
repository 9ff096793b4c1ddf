"""Charging placed steps against one target of a capacity snapshot (pure): a Slurm partition's idle
CPUs and GPUs, a Kueue queue's free quota, while they last; then one more queued job. `batch.charge`
and `route_batch` reach these through each backend's rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from converged_bridge.routing.kueue_rules import kueue_flavors, memory_mib
from converged_bridge.routing.slurm_rules import gpus_of_model
from converged_bridge.routing.types import KueueQueueView, SlurmPartitionView, StepRequest


def charge_partition(p: SlurmPartitionView, request: StepRequest, count: int) -> SlurmPartitionView:
    cpus = request.shape.tasks * request.shape.cpus
    gpus = request.shape.gpus * request.shape.nodes
    room = p.cpus_idle // cpus if cpus else count
    if gpus:
        room = min(room, gpus_of_model(p.gpus_idle, request.shape.gpu_model) // gpus)
    started = max(0, min(count, room))
    return SlurmPartitionView(  # built directly: dataclasses.replace costs twice as much, per placed step
        p.name,
        p.up,
        p.nodes,
        p.cpus_total,
        p.cpus_idle - started * cpus,
        p.mem_mib_per_node,
        p.gpus_total,
        take_gpus(p.gpus_idle, request.shape.gpu_model, started * gpus) if gpus else p.gpus_idle,
        p.pending_jobs + count - started,
        p.running_jobs + started,
        p.max_time_minutes,
    )


def take_gpus(idle: Mapping[str, int], model: str | None, n: int) -> Mapping[str, int]:
    """`idle` less `n` GPUs of `model` (any model when None, the most idle first)."""
    left = dict(idle)
    lowered = model.lower() if model else None
    for m in sorted(left, key=lambda m: -left[m]):
        if lowered is not None and m.lower() != lowered:
            continue
        taken = min(n, left[m])
        left[m] -= taken
        n -= taken
    return left


def charge_queue(q: KueueQueueView, request: StepRequest, count: int) -> KueueQueueView:
    cpu_milli = request.shape.tasks * request.shape.cpus * 1000
    gpus = request.shape.gpus * request.shape.nodes
    memory = memory_mib(request)
    fitting = {f.name for f in kueue_flavors(request, q)}
    flavors, admitted = [], 0
    for f in q.flavors:  # Kueue tries the flavors in order
        take = 0
        if f.name in fitting and count > admitted:
            room = (f.cpu_quota_milli - f.cpu_used_milli) // cpu_milli if cpu_milli else count
            if gpus:
                room = min(room, (f.gpu_quota - f.gpu_used) // gpus)
            if memory and f.memory_quota_mib is not None:
                room = min(room, (f.memory_quota_mib - f.memory_used_mib) // memory)
            take = max(0, min(count - admitted, room))
        flavors.append(
            replace(
                f,
                cpu_used_milli=f.cpu_used_milli + take * cpu_milli,
                gpu_used=f.gpu_used + take * gpus,
                memory_used_mib=f.memory_used_mib + take * memory,
            )
            if take
            else f
        )
        admitted += take
    return KueueQueueView(
        q.local_queue,
        q.cluster_queue,
        tuple(flavors),
        q.pending_workloads + count - admitted,
        q.admitted_workloads + admitted,
        q.active,
    )
