"""Which kueue.x-k8s.io version converged speaks, and what goes wrong in the other one: on captured
objects of a real Kueue 0.19 (no conversion webhook), read at both versions it serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from converged_bridge.api.workflowstep import Phase
from converged_bridge.backends.kueue.outcome import map_kueue_status
from converged_bridge.errors import PermanentBackendError
from converged_bridge.kube.core import NotFound
from converged_bridge.kube.kueue_api import KueueApi, choose_kueue_version, parse_group_versions
from converged_daemon.desired import build_cluster_queue, cohort_field
from converged_daemon.observed import cluster_queue_view
from tests.unit.test_daemon_plan import captured, spec

DATA = Path(__file__).resolve().parents[1] / "data" / "kueue-0.19"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())  # type: ignore[no-any-return]


class Discovery:
    """KubeObjects' core answering `GET /apis/kueue.x-k8s.io` with a captured document (or 404)."""

    def __init__(self, doc: dict[str, Any] | None) -> None:
        self.doc = doc
        self.asked = 0

    def request(self, verb: str, method: str, path: str, *_: Any) -> dict[str, Any]:
        self.asked += 1
        if self.doc is None:
            raise NotFound(f"{method} {path}: not found")
        return self.doc


class Objects:
    def __init__(self, core: Discovery) -> None:
        self.core = core


def test_the_newest_version_served_is_chosen() -> None:
    served = parse_group_versions(load("discovery-kueue.json"))
    assert served == ["v1beta2", "v1beta1"]  # Kueue 0.19: v1beta2 is the storage version
    assert choose_kueue_version(served) == "v1beta2"
    assert choose_kueue_version(["v1beta1"]) == "v1beta1"  # Kueue <= 0.15
    assert choose_kueue_version(["v1"]) is None


def test_the_version_is_asked_for_once_and_kinds_follow_it() -> None:
    core = Discovery(load("discovery-kueue.json"))
    api = KueueApi(Objects(core))  # type: ignore[arg-type]
    assert api.workloads().api_version == "kueue.x-k8s.io/v1beta2"
    assert api.cluster_queues().plural == "clusterqueues" and api.local_queues().kind == "LocalQueue"
    assert core.asked == 1


def test_a_cluster_without_kueue_or_with_an_unknown_version_is_a_clear_error() -> None:
    with pytest.raises(PermanentBackendError, match="is Kueue installed"):
        _ = KueueApi(Objects(Discovery(None))).version  # type: ignore[arg-type]
    future = {"versions": [{"groupVersion": "kueue.x-k8s.io/v1", "version": "v1"}]}
    with pytest.raises(PermanentBackendError, match="serves v1; converged speaks v1beta2, v1beta1"):
        _ = KueueApi(Objects(Discovery(future))).version  # type: ignore[arg-type]


def test_without_the_conversion_webhook_a_v1beta1_read_loses_the_cohort() -> None:
    """Why converged never reads or writes v1beta1 where v1beta2 is served."""
    v2, v1 = load("clusterqueue-cohort-v1beta2.json"), load("clusterqueue-cohort-v1beta1.json")
    assert v2["spec"]["cohortName"] == "capture"
    assert "cohort" not in v1["spec"] and "cohortName" not in v1["spec"]  # pruned: gone
    lq2, lq1 = load("localqueue-real-v1beta2.json"), load("localqueue-real-v1beta1.json")
    assert "flavorsUsage" in lq2["status"] and "flavorUsage" not in lq1["status"]


@pytest.mark.parametrize(("version", "field"), [("v1beta2", "cohortName"), ("v1beta1", "cohort")])
def test_the_daemon_writes_the_cohort_in_the_field_of_the_version_it_speaks(version: str, field: str) -> None:
    snapshot = captured()
    queue = build_cluster_queue("converged", spec(cohort="hpc"), snapshot.partitions, version)
    assert queue["apiVersion"] == f"kueue.x-k8s.io/{version}"
    assert cohort_field(version) == field and queue["spec"][field] == "hpc"
    # what the API server gives back compares equal to what was written, so nothing is re-applied
    stored = {**queue, "status": {"pendingWorkloads": 0}}
    assert cluster_queue_view(stored) == cluster_queue_view(queue)


def test_a_real_cluster_queue_of_either_version_reads_as_the_same_view() -> None:
    v2, v1 = load("clusterqueue-real-v1beta2.json"), load("clusterqueue-real-v1beta1.json")
    assert cluster_queue_view(v2) == cluster_queue_view(v1)  # nothing the daemon owns was renamed


@pytest.mark.parametrize("version", ["v1beta2", "v1beta1"])
def test_workloads_of_either_version_give_the_same_step_state(version: str) -> None:
    admitted = map_kueue_status("Job", None, load(f"workload-admitted-{version}.json"), [])
    finished = map_kueue_status("Job", None, load(f"workload-finished-{version}.json"), [])
    assert (admitted.phase, admitted.reason, admitted.flavors) == (Phase.QUEUED, "Admitted", ("real",))
    assert finished.phase is Phase.SUCCEEDED and finished.completion_time is not None
