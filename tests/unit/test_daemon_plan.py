"""plan(): desired Nodes, ResourceFlavors, ClusterQueue and SlurmCluster status from captured Slurm answers.

`Store` plays back what the API server keeps after our applies (object fields merged, status replaced),
so that a second cycle sees what the first one wrote; everything it does not keep is not looked at.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from converged_bridge.api.slurmcluster import PartitionState, SlurmClusterSpec
from converged_bridge.slurm.capacity import (
    CapacitySnapshot,
    build_capacity_snapshot,
    parse_nodes_v0038,
    parse_partitions,
    parse_scontrol_partitions,
    parse_sinfo_json,
)
from converged_bridge.slurm.jobs import parse_jobs_v0038
from converged_daemon.actions import Action, Apply, Delete
from converged_daemon.observed import ObservedCluster, group_observed, parse_status
from converged_daemon.plan import SlurmUnreachable, plan, plan_orphans

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm-22.05"
T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def captured() -> CapacitySnapshot:
    return build_capacity_snapshot(
        parse_nodes_v0038(load("restd-v0.0.38-nodes.json")),
        parse_partitions(load("restd-v0.0.38-partitions.json")),
        parse_jobs_v0038(load("restd-v0.0.38-jobs.json")),
    )


def drained() -> CapacitySnapshot:
    """Live 22.05: c1 draining, partition gpu DOWN."""
    return build_capacity_snapshot(
        parse_sinfo_json(load("sinfo-c1-drained.json")),
        parse_scontrol_partitions((DATA / "scontrol-show-partition-oneliner-gpu-down.txt").read_text()),
        [],
    )


def spec(**queue: Any) -> SlurmClusterSpec:
    return SlurmClusterSpec.model_validate(
        {
            "transport": "restd",
            "restd": {"url": "http://x", "tokenSecretRef": {"namespace": "n", "name": "s", "key": "k"}},
            **({"queue": queue} if queue else {}),
        }
    )


class Store:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    def apply(self, actions: list[Action]) -> None:
        for a in actions:
            key = (a.ref.plural, a.ref.name)
            if isinstance(a, Delete):
                self.objects.pop(key, None)
                continue
            assert isinstance(a, Apply)
            obj = self.objects.setdefault(key, {"metadata": {"name": a.ref.name}})
            body = copy.deepcopy(a.body)
            if a.subresource == "status":
                obj["status"] = body["status"]
            else:
                obj["metadata"].update(body["metadata"])
                obj["spec"] = body["spec"]
                if a.ref.plural == "clusterqueues":  # what Kueue's defaults add
                    obj["spec"].update(queueingStrategy="BestEffortFIFO", stopPolicy="None")

    def of(self, plural: str) -> list[dict[str, Any]]:
        return [o for (p, _), o in self.objects.items() if p == plural]

    def observed(self, cluster: str = "converged") -> ObservedCluster:
        grouped = group_observed(self.of("nodes"), self.of("resourceflavors"), self.of("clusterqueues"))
        return grouped.cluster(cluster, parse_status(self.objects.get(("slurmclusters", cluster))))


def run(store: Store, reading: Any, now: datetime = T0, sc: SlurmClusterSpec | None = None) -> list[Action]:
    actions = plan("converged", sc or spec(), reading, store.observed(), generation=3, now=now)
    store.apply(actions)
    return actions


def kinds(actions: list[Action]) -> list[tuple[str, str, str, str | None]]:
    return [
        (type(a).__name__, a.ref.plural, a.ref.name, a.subresource if isinstance(a, Apply) else None)
        for a in actions
    ]


def test_first_cycle_creates_node_flavor_per_partition_one_queue_and_status() -> None:
    store = Store()
    actions = run(store, captured())
    assert kinds(actions) == [
        ("Apply", "nodes", "slurm-converged-cpu", None),
        ("Apply", "nodes", "slurm-converged-cpu", "status"),
        ("Apply", "nodes", "slurm-converged-gpu", None),
        ("Apply", "nodes", "slurm-converged-gpu", "status"),
        ("Apply", "resourceflavors", "slurm-converged-cpu", None),
        ("Apply", "resourceflavors", "slurm-converged-gpu", None),
        ("Apply", "clusterqueues", "slurm-converged", None),
        ("Apply", "slurmclusters", "converged", "status"),
    ]
    gpu = store.objects[("nodes", "slurm-converged-gpu")]
    assert gpu["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "converged-daemon",
        "converged.dev/slurm-cluster": "converged",
        "converged.dev/slurm-partition": "gpu",
        "converged.dev/node-kind": "slurm",
    }
    assert gpu["spec"]["taints"] == [
        {"key": "converged.dev/slurm", "value": "converged", "effect": "NoSchedule"}
    ]
    assert gpu["status"]["capacity"] == {
        "cpu": "4",
        "memory": "7900Mi",
        "pods": "0",
        "nvidia.com/gpu": "2",
        "converged.dev/slurm-nodes": "1",
        "converged.dev/gpu-a100": "2",
    }
    assert gpu["status"]["allocatable"] == gpu["status"]["capacity"]
    ready = gpu["status"]["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "SlurmPartitionUp")

    flavor = store.objects[("resourceflavors", "slurm-converged-cpu")]["spec"]
    assert flavor["nodeLabels"] == {
        "converged.dev/slurm-cluster": "converged",
        "converged.dev/slurm-partition": "cpu",
    }
    assert flavor["tolerations"] == [
        {"key": "converged.dev/slurm", "value": "converged", "effect": "NoSchedule", "operator": "Equal"}
    ]

    queue = store.objects[("clusterqueues", "slurm-converged")]["spec"]
    group = queue["resourceGroups"][0]
    assert group["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu", "converged.dev/gpu-a100"]
    quotas = {f["name"]: {r["name"]: r["nominalQuota"] for r in f["resources"]} for f in group["flavors"]}
    assert quotas == {  # quotaPolicy idle (the default): what Slurm has free now
        "slurm-converged-cpu": {
            "cpu": "4",
            "memory": "13752Mi",
            "nvidia.com/gpu": "0",
            "converged.dev/gpu-a100": "0",
        },
        "slurm-converged-gpu": {
            "cpu": "3",
            "memory": "7388Mi",
            "nvidia.com/gpu": "0",
            "converged.dev/gpu-a100": "0",
        },
    }

    status = store.objects[("slurmclusters", "converged")]["status"]
    assert status["observedGeneration"] == 3
    assert status["lastSyncTime"] == "2026-11-22T08:00:00Z"
    assert status["slurmVersion"] == "22.05.8" and status["openapiVersion"] == "v0.0.38"
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [
        ("Reachable", "True"),
        ("Synced", "True"),
    ]
    assert "gpus" not in status["partitions"][0]["total"]  # an empty map would reach the API as null
    assert status["partitions"][1] == {
        "name": "gpu",
        "state": "UP",
        "total": {"nodes": 1, "cpus": 4, "memoryMiB": 7900, "gpus": {"a100": 2}},
        "idle": {"nodes": 0, "cpus": 3, "memoryMiB": 7388, "gpus": {"a100": 0}},
        "runningJobs": 1,
        "pendingJobs": 1,
        "maxTimeMinutes": 720,
    }


def test_unchanged_cycle_writes_nothing_until_the_status_refresh() -> None:
    store = Store()
    run(store, captured())
    assert run(store, captured(), T0 + timedelta(seconds=30)) == []
    assert run(store, captured(), T0 + timedelta(seconds=299)) == []
    refresh = run(store, captured(), T0 + timedelta(seconds=300))
    assert kinds(refresh) == [("Apply", "slurmclusters", "converged", "status")]


def test_equal_quantities_in_other_spellings_are_no_change() -> None:
    store = Store()
    run(store, captured())
    node = store.objects[("nodes", "slurm-converged-cpu")]
    node["status"]["capacity"]["memory"] = str(15800 * 1024 * 1024)  # bytes, as another writer may spell it
    node["status"]["capacity"]["kubernetes.io/other"] = "1"  # someone else's resource: not ours to judge
    assert run(store, captured(), T0 + timedelta(seconds=10)) == []


def test_drain_and_partition_down_change_only_what_they_touch() -> None:
    store = Store()
    run(store, captured())
    actions = run(store, drained(), T0 + timedelta(seconds=10))
    assert kinds(actions) == [
        ("Apply", "nodes", "slurm-converged-cpu", "status"),
        ("Apply", "nodes", "slurm-converged-gpu", "status"),
        ("Apply", "clusterqueues", "slurm-converged", None),
        ("Apply", "slurmclusters", "converged", "status"),
    ]
    cpu = store.objects[("nodes", "slurm-converged-cpu")]["status"]
    assert cpu["capacity"]["cpu"] == "4" and cpu["capacity"]["converged.dev/slurm-nodes"] == "1"
    gpu_ready = store.objects[("nodes", "slurm-converged-gpu")]["status"]["conditions"][0]
    assert (gpu_ready["status"], gpu_ready["reason"]) == ("False", "SlurmPartitionDown")
    assert gpu_ready["lastTransitionTime"] == "2026-11-22T08:00:10Z"
    flavors = store.objects[("clusterqueues", "slurm-converged")]["spec"]["resourceGroups"][0]["flavors"]
    assert {r["name"]: r["nominalQuota"] for r in flavors[1]["resources"]}["cpu"] == "0"  # DOWN: no quota


def test_outage_marks_nodes_not_ready_keeps_capacity_quota_and_objects() -> None:
    store = Store()
    run(store, captured())
    before = copy.deepcopy(store.objects)
    actions = run(store, SlurmUnreachable("slurmrestd: connection refused"), T0 + timedelta(seconds=20))
    assert not any(isinstance(a, Delete) for a in actions)
    assert kinds(actions) == [
        ("Apply", "nodes", "slurm-converged-cpu", "status"),
        ("Apply", "nodes", "slurm-converged-gpu", "status"),
        ("Apply", "slurmclusters", "converged", "status"),
    ]
    for name in ("slurm-converged-cpu", "slurm-converged-gpu"):
        status = store.objects[("nodes", name)]["status"]
        assert status["capacity"] == before[("nodes", name)]["status"]["capacity"]
        assert (status["conditions"][0]["status"], status["conditions"][0]["reason"]) == (
            "False",
            "SlurmUnreachable",
        )
    assert store.objects[("clusterqueues", "slurm-converged")] == before[("clusterqueues", "slurm-converged")]
    status = store.objects[("slurmclusters", "converged")]["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Reachable"]["status"] == "False"
    assert conditions["Reachable"]["message"] == "slurmrestd: connection refused"
    assert conditions["Synced"]["status"] == "False"
    assert status["partitions"] == before[("slurmclusters", "converged")]["status"]["partitions"]
    assert status["lastSyncTime"] == "2026-11-22T08:00:00Z"
    # the outage goes on: nothing more to write; Slurm is back: everything Ready again
    assert run(store, SlurmUnreachable("slurmrestd: connection refused"), T0 + timedelta(seconds=30)) == []
    back = run(store, captured(), T0 + timedelta(seconds=40))
    assert kinds(back) == [
        ("Apply", "nodes", "slurm-converged-cpu", "status"),
        ("Apply", "nodes", "slurm-converged-gpu", "status"),
        ("Apply", "slurmclusters", "converged", "status"),
    ]
    reachable = {c["type"]: c for c in store.objects[("slurmclusters", "converged")]["status"]["conditions"]}
    assert reachable["Reachable"]["status"] == "True"
    assert reachable["Reachable"]["lastTransitionTime"] == "2026-11-22T08:00:40Z"


def test_partition_that_disappears_is_cleaned_up_and_the_filter_applies() -> None:
    store = Store()
    run(store, captured())
    only_cpu = spec().model_copy(update={"partitions": ["cpu", "nosuch"]})
    actions = run(store, captured(), T0 + timedelta(seconds=10), sc=only_cpu)
    assert kinds(actions) == [
        ("Apply", "clusterqueues", "slurm-converged", None),
        ("Delete", "nodes", "slurm-converged-gpu", None),
        ("Delete", "resourceflavors", "slurm-converged-gpu", None),
        ("Apply", "slurmclusters", "converged", "status"),
    ]
    flavors = store.objects[("clusterqueues", "slurm-converged")]["spec"]["resourceGroups"][0]
    assert flavors["coveredResources"] == ["cpu", "memory"]
    synced = store.objects[("slurmclusters", "converged")]["status"]["conditions"][1]
    assert synced["message"] == "1 partitions mirrored; not in Slurm: nosuch"


def test_quota_policy_total_cohort_and_queue_name() -> None:
    store = Store()
    run(store, captured(), sc=spec(quotaPolicy="total", cohort="hpc", clusterQueue="slurm"))
    queue = store.objects[("clusterqueues", "slurm")]["spec"]
    assert queue["cohortName"] == "hpc" and "cohort" not in queue  # v1beta2: renamed
    quotas = {
        f["name"]: {r["name"]: r["nominalQuota"] for r in f["resources"]}
        for f in queue["resourceGroups"][0]["flavors"]
    }
    assert quotas["slurm-converged-gpu"] == {
        "cpu": "4",
        "memory": "7900Mi",
        "nvidia.com/gpu": "2",
        "converged.dev/gpu-a100": "2",
    }
    assert quotas["slurm-converged-cpu"]["cpu"] == "8"


def test_failed_apply_is_reported_in_synced() -> None:
    store = Store()
    run(store, captured())
    actions = plan(
        "converged",
        spec(),
        captured(),
        store.observed(),
        generation=3,
        now=T0 + timedelta(seconds=10),
        apply_error="nodes slurm-converged-cpu: HTTP 403 Forbidden",
    )
    assert kinds(actions) == [("Apply", "slurmclusters", "converged", "status")]
    synced = actions[0].body["status"]["conditions"][1]
    assert (synced["status"], synced["reason"]) == ("False", "ApplyFailed")


def test_orphans_of_deleted_slurm_clusters_are_deleted() -> None:
    store = Store()
    run(store, captured())
    grouped = group_observed(store.of("nodes"), store.of("resourceflavors"), store.of("clusterqueues"))
    assert plan_orphans(["converged"], grouped) == []
    assert kinds(plan_orphans(["other"], grouped)) == [
        ("Delete", "clusterqueues", "slurm-converged", None),
        ("Delete", "nodes", "slurm-converged-cpu", None),
        ("Delete", "nodes", "slurm-converged-gpu", None),
        ("Delete", "resourceflavors", "slurm-converged-cpu", None),
        ("Delete", "resourceflavors", "slurm-converged-gpu", None),
    ]


def test_names_of_partitions_that_are_no_dns_labels() -> None:
    store = Store()
    snap = captured()
    odd = CapacitySnapshot(
        snap.slurm_version,
        snap.source,
        (snap.partitions[0].__class__(**{**_fields(snap.partitions[0]), "name": "Big_Mem"}),),
    )
    run(store, odd)
    (node,) = store.of("nodes")
    assert node["metadata"]["name"].startswith("slurm-converged-big-mem-")
    assert node["metadata"]["labels"]["converged.dev/slurm-partition"] == "Big_Mem"
    assert node["metadata"]["annotations"]["converged.dev/slurm-partition-name"] == "Big_Mem"
    assert snap.partitions[0].state == PartitionState.UP


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}
