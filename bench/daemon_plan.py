"""Benchmark (issue 6): the resource daemon's parse + plan on a synthetic 10,000-node, 50-partition Slurm.

The snapshot is built from the REAL captured records (tests/data/slurm-22.05 restd v0.0.38 and
slurm-24.11 restd v0.0.42 `/nodes`, `/partitions`, `/jobs`): each captured node record is copied with a
new name and partition (200 nodes per partition, GPU nodes in every fifth partition), partition records
likewise, and the captured job records are replicated to 5,000 jobs. Measured, per dialect:
- CPU time of one cycle's parse (JSON text -> CapacitySnapshot) + plan (-> actions), median of N;
- Kubernetes writes planned by an unchanged cycle (target 0);
- the cycles from a capacity change in Slurm to the updated ClusterQueue quota.

Usage: .venv/bin/python bench/daemon_plan.py [--cycles 20]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.slurm.capacity import (
    CapacitySnapshot,
    NodesReading,
    build_capacity_snapshot,
    parse_nodes_v0038,
    parse_nodes_v0040,
    parse_partitions,
)
from converged_bridge.slurm.jobs import SlurmJob, parse_jobs_v0038, parse_jobs_v0040
from converged_daemon.actions import Action, Apply, Delete
from converged_daemon.observed import ObservedCluster, group_observed, parse_status
from converged_daemon.plan import plan

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
NODES, PARTITIONS, JOBS = 10_000, 50, 5_000
SPEC = SlurmClusterSpec.model_validate(
    {"restd": {"url": "http://restd", "tokenSecretRef": {"namespace": "n", "name": "s", "key": "k"}}}
)


def synthetic(folder: str, version: str) -> tuple[str, str, str]:
    """(nodes, partitions, jobs) JSON texts of a big cluster made of the captured records."""
    nodes = json.loads((DATA / folder / f"restd-{version}-nodes.json").read_text())
    parts = json.loads((DATA / folder / f"restd-{version}-partitions.json").read_text())
    jobs = json.loads((DATA / folder / f"restd-{version}-jobs.json").read_text())
    cpu_node, gpu_node = nodes["nodes"][1], nodes["nodes"][2]  # c2 (idle), g1 (GPUs in use)
    per = NODES // PARTITIONS
    out_nodes = []
    for i in range(NODES):
        p = i // per
        record = copy.deepcopy(gpu_node if p % 5 == 0 else cpu_node)
        record["name"] = f"n{i:05d}"
        record["partitions"] = [f"p{p:02d}"]
        out_nodes.append(record)
    nodes["nodes"] = out_nodes
    template = parts["partitions"][0]
    out_parts = []
    for p in range(PARTITIONS):
        record = copy.deepcopy(template)
        record["name"] = f"p{p:02d}"
        out_parts.append(record)
    parts["partitions"] = out_parts
    out_jobs = []
    for i in range(JOBS):
        record = copy.deepcopy(jobs["jobs"][i % len(jobs["jobs"])])
        record["job_id"] = 100_000 + i
        record["partition"] = f"p{i % PARTITIONS:02d}"
        out_jobs.append(record)
    jobs["jobs"] = out_jobs
    return json.dumps(nodes), json.dumps(parts), json.dumps(jobs)


class Store:
    """What the API server keeps after our applies (so the next cycle observes the last one's writes)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    def apply(self, actions: list[Action]) -> None:
        for a in actions:
            key = (a.ref.plural, a.ref.name)
            if isinstance(a, Delete):
                self.objects.pop(key, None)
            elif isinstance(a, Apply):
                obj = self.objects.setdefault(key, {"metadata": {"name": a.ref.name}})
                if a.subresource == "status":
                    obj["status"] = copy.deepcopy(a.body["status"])
                else:
                    obj["metadata"].update(copy.deepcopy(a.body["metadata"]))
                    obj["spec"] = copy.deepcopy(a.body["spec"])

    def observed(self) -> ObservedCluster:
        def of(plural: str) -> list[dict[str, Any]]:
            return [o for (p, _), o in self.objects.items() if p == plural]

        grouped = group_observed(of("nodes"), of("resourceflavors"), of("clusterqueues"))
        return grouped.cluster("big", parse_status(self.objects.get(("slurmclusters", "big"))))


def parse(
    texts: tuple[str, str, str],
    nodes_parser: Callable[[Any], NodesReading],
    jobs_parser: Callable[[Any], list[SlurmJob]],
) -> CapacitySnapshot:
    nodes, parts, jobs = texts
    return build_capacity_snapshot(
        nodes_parser(json.loads(nodes)), parse_partitions(json.loads(parts)), jobs_parser(json.loads(jobs))
    )


def run(label: str, texts: tuple[str, str, str], nodes_parser: Any, jobs_parser: Any, cycles: int) -> None:
    store = Store()
    now = datetime(2026, 11, 22, tzinfo=UTC)
    first = plan(
        "big", SPEC, parse(texts, nodes_parser, jobs_parser), store.observed(), generation=1, now=now
    )
    store.apply(first)
    parse_cpu, plan_cpu, writes = [], [], []
    for i in range(cycles):
        t0 = time.process_time()
        snap = parse(texts, nodes_parser, jobs_parser)
        t1 = time.process_time()
        actions = plan(
            "big", SPEC, snap, store.observed(), generation=1, now=now + timedelta(seconds=10 * (i + 1))
        )
        t2 = time.process_time()
        store.apply(actions)
        parse_cpu.append(t1 - t0)
        plan_cpu.append(t2 - t1)
        writes.append(len(actions))
    # a capacity change: one node of p01 drained in Slurm
    nodes = json.loads(texts[0])
    victim = nodes["nodes"][NODES // PARTITIONS]
    if isinstance(victim["state"], list):
        victim["state"] = [*victim["state"], "DRAIN"]
    else:
        victim["state_flags"] = ["DRAIN"]
    changed = (json.dumps(nodes), texts[1], texts[2])
    after = plan(
        "big",
        SPEC,
        parse(changed, nodes_parser, jobs_parser),
        store.observed(),
        generation=1,
        now=now + timedelta(hours=1),
    )
    both = [p + q for p, q in zip(parse_cpu, plan_cpu, strict=True)]
    quota_cycle = 1 if any(a.ref.plural == "clusterqueues" for a in after) else None
    print(
        f"{label}: {NODES} nodes, {PARTITIONS} partitions, {JOBS} jobs; first cycle {len(first)} writes\n"
        f"  parse CPU median {statistics.median(parse_cpu) * 1000:.0f} ms (max {max(parse_cpu) * 1000:.0f}), "
        f"plan CPU median {statistics.median(plan_cpu) * 1000:.0f} ms (max {max(plan_cpu) * 1000:.0f}), "
        f"parse+plan median {statistics.median(both) * 1000:.0f} ms\n"
        f"  writes per unchanged cycle: {sorted(set(writes))}\n"
        f"  after draining one node: {[f'{a.ref.plural}/{a.ref.name}' for a in after]} -> quota updated "
        f"in cycle {quota_cycle} after the change"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    run(
        "slurmrestd v0.0.38 (22.05)",
        synthetic("slurm-22.05", "v0.0.38"),
        parse_nodes_v0038,
        parse_jobs_v0038,
        args.cycles,
    )
    run(
        "slurmrestd v0.0.42 (24.11)",
        synthetic("slurm-24.11", "v0.0.42"),
        parse_nodes_v0040,
        parse_jobs_v0040,
        args.cycles,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
