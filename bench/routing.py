"""Benchmark (issue 7): route 10,000 ready steps. Target: <= 100 ms in total.

Pure CPU, no cluster: a capacity view shaped like a mid-size site (2 SlurmClusters with 6 partitions
each, 4 Kueue LocalQueues with 3 flavors each, MPI operator installed) and a mix of step shapes (plain
CPU, big-memory, GPU with and without a model, MPI, explicit backends, long runtimes). Each request is
parsed from snakemake-style resources first (as the plugin does for every job), then routed as one
burst (`route_batch`: each placed step is charged against the snapshot, so the burst spreads); both
phases are timed, best of `--repeat` runs.

Usage: .venv/bin/python bench/routing.py [--steps 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from typing import Any

from converged_bridge.api.workflowstep import Operator
from converged_bridge.routing import (
    CapacityView,
    KueueFlavorView,
    KueueQueueView,
    SiteWeights,
    SlurmClusterView,
    SlurmPartitionView,
    StepRequest,
    route,
    route_batch,
)
from snakemake_executor_plugin_converged.resources import ResourceParser


def site(rng: random.Random) -> CapacityView:
    clusters = []
    for c in range(2):
        partitions = []
        for p in range(6):
            gpus = {"a100": 8 * 4} if p == 4 else ({"h100": 4 * 4} if p == 5 else {})
            partitions.append(
                SlurmPartitionView(
                    name=f"p{p}",
                    nodes=64,
                    cpus_total=64 * 64,
                    cpus_idle=rng.randrange(0, 64 * 64),
                    mem_mib_per_node=256_000 if p != 3 else 2_000_000,
                    gpus_total=gpus,
                    gpus_idle={m: rng.randrange(0, n + 1) for m, n in gpus.items()},
                    pending_jobs=rng.randrange(0, 400),
                    running_jobs=rng.randrange(0, 400),
                    max_time_minutes=[60, 1440, 10080, 2880, 2880, 720][p],
                )
            )
        clusters.append(
            SlurmClusterView(name=f"hpc{c}", partitions=tuple(partitions), default_partition="p1")
        )
    queues = tuple(
        KueueQueueView(
            local_queue=f"team-a/q{q}",
            cluster_queue=f"cq{q}",
            flavors=(
                KueueFlavorView(
                    name="cpu", cpu_quota_milli=512_000, cpu_used_milli=rng.randrange(0, 512_000)
                ),
                KueueFlavorView(
                    name="spot", cpu_quota_milli=256_000, cpu_used_milli=rng.randrange(0, 256_000)
                ),
                KueueFlavorView(
                    name="gpu",
                    cpu_quota_milli=64_000,
                    gpu_quota=16,
                    gpu_used=rng.randrange(0, 17),
                    gpu_model="a100",
                ),
            ),
            pending_workloads=rng.randrange(0, 200),
            admitted_workloads=rng.randrange(0, 200),
        )
        for q in range(4)
    )
    return CapacityView(
        slurm=tuple(clusters), kueue=queues, operators=frozenset({Operator.JOB, Operator.MPIJOB})
    )


SHAPES: list[tuple[dict[str, Any], int]] = [
    ({"mem_mb": 1000, "runtime": 10}, 1),
    ({"mem_mb": 8000, "runtime": 60}, 4),
    ({"mem_mb": 500_000, "runtime": 600}, 16),
    ({"gpu": 1, "gpu_model": "a100", "runtime": 120}, 8),
    ({"gpu": "h100:2", "runtime": 240}, 8),
    ({"mpi": "srun", "nodes": 4, "tasks": 128, "runtime": 300}, 1),
    ({"converged_backend": "kueue", "mem_mb": 2000}, 2),
    ({"converged_backend": "slurm", "slurm_partition": "p2", "runtime": 5000}, 1),
    ({"runtime": 20_000}, 1),  # longer than any partition: Kueue only
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(7)  # noqa: S311 - reproducible benchmark data, not cryptography
    capacity = site(rng)
    weights = SiteWeights()
    jobs = [SHAPES[rng.randrange(len(SHAPES))] for _ in range(args.steps)]

    best_parse = best_route = best_batch = float("inf")
    decisions: Counter[str] = Counter()
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        parse = ResourceParser(default_image="img")  # the plugin's: one per run
        requests: list[StepRequest] = [
            parse("rule", res, threads=threads).request("rule", "team-a", None) for res, threads in jobs
        ]
        t1 = time.perf_counter()
        routed = [route(r, capacity, weights) for r in requests]
        t2 = time.perf_counter()
        batched = route_batch(requests, capacity, weights)
        t3 = time.perf_counter()
        best_parse, best_route = min(best_parse, t1 - t0), min(best_route, t2 - t1)
        best_batch = min(best_batch, t3 - t2)
        decisions = Counter(
            f"{d.backend.value if d.backend else 'refused'}/{d.decision.value}" for d in batched
        )
        unique = len({id(d) for d in batched})
        spread = len({d.target for d in batched if d.backend})
        herded = len({d.target for d in routed if d.backend})
    total = best_parse + best_batch
    print(f"steps: {args.steps} ({len(set(requests))} distinct shapes), best of {args.repeat}")
    print(f"route() per step: {best_route * 1000:.1f} ms ({best_route / args.steps * 1e6:.2f} us/step)")
    print(
        f"route_batch(), each placed step charged against the snapshot: {best_batch * 1000:.1f} ms "
        f"({unique} distinct decisions; {spread} targets used, {herded} without charging)"
    )
    print(f"parse resources: {best_parse * 1000:.1f} ms; parse + route_batch(): {total * 1000:.1f} ms")
    print("decisions: " + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items())))
    print(f"target <= 100 ms (route_batch): {'met' if best_batch <= 0.1 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
