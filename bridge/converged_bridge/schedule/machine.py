"""The simulated machine from the router's capacity snapshot, and a step's need on it (pure).

Each Slurm partition is a pool of its nodes (CPUs, memory and GPUs split evenly: the snapshot has
totals per partition), each Kueue ClusterQueue a pool of its flavors' nominal quota (the snapshot has
no memory quota: memory does not limit Kueue steps here). Pools are the targets' whole capacity: other
users' work on them is not counted, and partitions sharing nodes are counted once each.
"""

from __future__ import annotations

import math

from converged_bridge.api.workflowstep import Backend, Resources
from converged_bridge.routing import CapacityView, SlurmPartitionView
from converged_bridge.schedule.types import ANY_MODEL, Machine, Need, Pool, Slot


def build_machine(capacity: CapacityView) -> Machine:
    """One pool per Slurm partition with a known status and per ClusterQueue behind a LocalQueue."""
    pools: dict[str, Pool] = {}
    targets: dict[str, str] = {}
    for cluster in capacity.slurm:
        for partition in cluster.partitions or ():
            target = f"{cluster.name}/{partition.name}"
            pools[f"slurm:{target}"] = Pool(name=target, slots=build_node_slots(partition))
            targets[target] = f"slurm:{target}"
    for queue in capacity.kueue:
        key = f"kueue:{queue.cluster_queue}"
        if key not in pools:
            slots = tuple(
                Slot(
                    cpus=f.cpu_quota_milli / 1000,
                    gpus={(f.gpu_model or ANY_MODEL).lower(): f.gpu_quota} if f.gpu_quota else {},
                )
                for f in queue.flavors
            )
            pools[key] = Pool(name=f"ClusterQueue {queue.cluster_queue}", slots=slots)
        targets[queue.local_queue] = key
    return Machine(pools=pools, targets=targets)


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


def build_need(shape: Resources, backend: Backend) -> Need:
    """What a step of `shape` holds on `backend`: on Slurm a chunk per node (its tasks' CPUs, memory
    and GPUs per node); on Kueue one charge against a flavor's quota (all pods' CPUs and GPUs)."""
    model = shape.gpu_model.lower() if shape.gpu_model else None
    if backend == Backend.SLURM:
        return Need(
            parts=shape.nodes,
            cpus=math.ceil(shape.tasks / shape.nodes) * shape.cpus,
            mem_mib=shape.mem_mib or 0,
            gpus=shape.gpus,
            gpu_model=model,
        )
    return Need(
        parts=1,
        cpus=shape.tasks * shape.cpus,
        mem_mib=(shape.mem_mib or 0) * shape.nodes,
        gpus=shape.gpus * shape.nodes,
        gpu_model=model,
    )
