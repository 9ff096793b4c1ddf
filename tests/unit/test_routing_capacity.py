"""The router's capacity view, built from real objects captured on the local cluster."""

from __future__ import annotations

import copy
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

from converged_bridge.api.workflowstep import Operator
from converged_bridge.quantity import parse_quantity
from converged_bridge.routing import CapacityView, Preference, SiteWeights, StepRequest, route
from converged_bridge.routing.capacity import (
    map_kueue_queue,
    map_operators,
    map_slurm_clusters,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "plugin"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def test_slurm_cluster_status_becomes_partitions() -> None:
    (view,) = map_slurm_clusters([load("slurmcluster-with-status.json")], "team-a")
    assert view.name == "converged-plugin" and view.default_partition == "cpu"
    assert view.partitions is not None
    cpu, gpu = view.partitions
    assert (cpu.name, cpu.nodes, cpu.cpus_total, cpu.max_time_minutes, dict(cpu.gpus_total)) == (
        "cpu",
        2,
        8,
        1440,
        {},
    )
    assert (gpu.name, gpu.nodes, gpu.cpus_total, gpu.max_time_minutes, dict(gpu.gpus_total)) == (
        "gpu",
        1,
        4,
        720,
        {"a100": 2},
    )
    assert cpu.mem_mib_per_node == 7900 and cpu.up


def test_only_clusters_mapping_the_namespace_and_without_status_unknown() -> None:
    obj = load("slurmcluster-with-status.json")
    assert map_slurm_clusters([obj], "team-c") == ()
    bare = copy.deepcopy(obj)
    bare["metadata"]["name"] = "bare"
    del bare["status"]
    views = map_slurm_clusters([obj, bare, {"spec": {"transport": "restd"}}], "team-a")
    assert [v.name for v in views] == ["bare", "converged-plugin"]
    assert views[0].partitions is None


def test_kueue_queue_quota_usage_and_gpu_model_from_flavor_labels() -> None:
    view = map_kueue_queue(
        load("localqueue-default.json"),
        load("clusterqueue-default.json"),
        load("resourceflavors.json")["items"],
    )
    assert (view.local_queue, view.cluster_queue, view.active) == ("default/default", "default", True)
    flavors = {f.name: f for f in view.flavors}
    assert (flavors["kwok"].cpu_quota_milli, flavors["kwok"].gpu_quota) == (24000, 0)
    assert (flavors["kwok-gpu"].cpu_quota_milli, flavors["kwok-gpu"].gpu_quota) == (8000, 2)
    assert flavors["kwok-gpu"].gpu_model == "a100" and flavors["kwok"].gpu_model is None
    assert (flavors["kwok"].memory_quota_mib, flavors["kwok-gpu"].memory_quota_mib) == (96 * 1024, 32 * 1024)
    uncovered = load("clusterqueue-default.json")
    for flavor in uncovered["spec"]["resourceGroups"][0]["flavors"]:
        flavor["resources"] = [r for r in flavor["resources"] if r["name"] != "memory"]
    view = map_kueue_queue(load("localqueue-default.json"), uncovered, [])
    assert {f.memory_quota_mib for f in view.flavors} == {None}  # no memory quota: no memory limit


def test_kueue_usage_and_pending_raise_the_expected_wait() -> None:
    cq = load("clusterqueue-default.json")
    busy = copy.deepcopy(cq)
    busy["status"]["pendingWorkloads"] = 4
    for flavor in busy["status"]["flavorsUsage"]:
        for r in flavor["resources"]:
            if r["name"] == "cpu":
                r["total"] = "23500m"
    lq, flavors = load("localqueue-default.json"), load("resourceflavors.json")["items"]
    request = StepRequest(rule="r", preference=Preference.KUEUE, has_image=True)
    idle = route(request, CapacityView(kueue=(map_kueue_queue(lq, cq, flavors),)), SiteWeights())
    full = route(request, CapacityView(kueue=(map_kueue_queue(lq, busy, flavors),)), SiteWeights())
    assert idle.expected_wait_seconds == 3.0 and "fits free quota of flavor kwok" in idle.reason
    assert full.expected_wait_seconds is not None and full.expected_wait_seconds > 100
    assert "4 pending" in full.reason


def test_quantities_and_operators() -> None:
    values = [parse_quantity(q) for q in ("2", "500m", "8Gi", "1k", "1e3", "x")]
    assert values == [2, Fraction(1, 2), 8 * 2**30, 1000, 1000, None]
    assert map_operators([]) == frozenset({Operator.JOB})
    assert map_operators(["mpijobs.kubeflow.org", "jobsets.jobset.x-k8s.io"]) == frozenset(
        {Operator.JOB, Operator.MPIJOB, Operator.JOBSET}
    )
