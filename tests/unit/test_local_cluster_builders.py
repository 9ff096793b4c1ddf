"""The local cluster's pure builders: kwok nodes, Kueue queues/config, kubeconfig, versions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from localcluster import kubeconfig, kubelet, kueue, kwok
from localcluster.layout import HERE, Layout, Ports, read_versions


def test_versions_are_pinned_and_match_the_wrapper_modules() -> None:
    versions = read_versions()
    for key in (
        "KUBERNETES_VERSION",
        "ETCD_VERSION",
        "KUEUE_VERSION",
        "KWOK_VERSION",
        "JOBSET_VERSION",
        "MPI_OPERATOR_VERSION",
        "COREDNS_VERSION",
    ):
        assert versions[key].startswith("v"), key
    assert versions["KUBERNETES_VERSION"].startswith("v1.37.")
    assert versions["KUEUE_VERSION"].startswith("v0.19.")
    gomod = (HERE / "go" / "kubernetes" / "go.mod").read_text()
    assert f"k8s.io/kubernetes {versions['KUBERNETES_VERSION']}\n" in gomod
    staging = versions["KUBERNETES_VERSION"].replace("v1.", "v0.", 1)
    replaces = [line for line in gomod.splitlines() if "=>" in line]
    assert len(replaces) == 33  # every staging module of k8s.io/kubernetes v1.37
    assert all(line.rstrip().endswith(staging) for line in replaces)
    for name, module, key in (
        ("kueue", "sigs.k8s.io/kueue", "KUEUE_VERSION"),
        ("kwok", "sigs.k8s.io/kwok", "KWOK_VERSION"),
        ("jobset", "sigs.k8s.io/jobset", "JOBSET_VERSION"),
        ("mpi-operator", "github.com/kubeflow/mpi-operator", "MPI_OPERATOR_VERSION"),
        ("coredns", "github.com/coredns/coredns", "COREDNS_VERSION"),
    ):
        assert f"{module} {versions[key]}\n" in (HERE / "go" / name / "go.mod").read_text(), name


def test_layout_reads_a_dashed_component_as_its_underscored_version(tmp_path: Path) -> None:
    versions = read_versions()
    layout = Layout(root=tmp_path, cache=tmp_path / "cache", ports=Ports(), versions=versions)
    mpi = tmp_path / "cache" / f"mpi-operator-{versions['MPI_OPERATOR_VERSION']}"
    assert layout.bin("mpi-operator", "mpi-operator") == mpi / "mpi-operator"
    assert layout.cached("jobset", "config").parent.name == f"jobset-{versions['JOBSET_VERSION']}"


def test_kwok_nodes_one_gpu_node_all_tainted() -> None:
    nodes: list[dict[str, Any]] = kwok.build_nodes()["items"]  # type: ignore[assignment]
    assert [n["metadata"]["name"] for n in nodes] == [f"kwok-node-{i}" for i in range(4)]
    gpu = [n for n in nodes if "nvidia.com/gpu" in n["status"]["capacity"]]
    assert [n["metadata"]["name"] for n in gpu] == ["kwok-node-3"]
    assert gpu[0]["metadata"]["labels"]["converged.dev/gpu-model"] == "a100"
    for n in nodes:
        assert n["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"}
        assert n["spec"]["taints"] == [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]
        assert n["status"]["capacity"]["cpu"] == "8"


def test_queue_quota_matches_the_kwok_nodes_and_flavors_select_them() -> None:
    items: list[dict[str, Any]] = kueue.build_queues()["items"]  # type: ignore[assignment]
    by_kind = {(i["kind"], i["metadata"]["name"]): i for i in items}
    cq = by_kind[("ClusterQueue", "default")]
    flavors = cq["spec"]["resourceGroups"][0]["flavors"]
    quota = {f["name"]: {r["name"]: r["nominalQuota"] for r in f["resources"]} for f in flavors}
    nodes: list[dict[str, Any]] = kwok.build_nodes()["items"]  # type: ignore[assignment]

    def matching(flavor: dict[str, Any]) -> list[dict[str, Any]]:
        want = flavor["spec"]["nodeLabels"].items()
        return [n for n in nodes if want <= n["metadata"]["labels"].items()]

    gpu_nodes = matching(by_kind[("ResourceFlavor", "kwok-gpu")])
    assert len(gpu_nodes) == 1
    assert quota["kwok-gpu"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}
    # the cpu flavor holds the remaining three nodes' CPUs and no GPUs, so GPU work only fits kwok-gpu
    assert quota["kwok"] == {"cpu": str(8 * (len(nodes) - 1)), "memory": "96Gi", "nvidia.com/gpu": "0"}
    assert [f["name"] for f in flavors] == ["kwok", "kwok-gpu"]
    assert by_kind[("LocalQueue", "default")]["spec"]["clusterQueue"] == "default"


def test_real_queue_selects_only_the_real_node_within_what_the_machine_has() -> None:
    items: list[dict[str, Any]] = kueue.build_queues()["items"]  # type: ignore[assignment]
    by_kind = {(i["kind"], i["metadata"]["name"]): i for i in items}
    flavor = by_kind[("ResourceFlavor", "real")]
    # the flavor selects the real node by the label its kubelet registers, and no kwok node
    assert flavor["spec"]["nodeLabels"] == kubelet.NODE_LABELS
    assert "tolerations" not in flavor["spec"]  # the real node is not tainted
    kwok_nodes: list[dict[str, Any]] = kwok.build_nodes()["items"]  # type: ignore[assignment]
    assert not [
        n for n in kwok_nodes if flavor["spec"]["nodeLabels"].items() <= n["metadata"]["labels"].items()
    ]

    cq = by_kind[("ClusterQueue", "real")]
    groups = cq["spec"]["resourceGroups"]
    assert [f["name"] for g in groups for f in g["flavors"]] == ["real"]
    quota = {r["name"]: r["nominalQuota"] for r in groups[0]["flavors"][0]["resources"]}
    assert quota == {"cpu": "2", "memory": "8Gi"}
    assert set(groups[0]["coveredResources"]) == set(quota)
    assert int(quota["cpu"]) <= (os.cpu_count() or 0)
    memory_gi = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    assert int(quota["memory"].removesuffix("Gi")) <= memory_gi
    assert by_kind[("LocalQueue", "real")]["metadata"]["namespace"] == "default"
    assert by_kind[("LocalQueue", "real")]["spec"]["clusterQueue"] == "real"
    # the kwok queue keeps its own flavors: nothing meant to really run lands on a fake node by default
    assert ("ClusterQueue", "default") in by_kind and ("LocalQueue", "default") in by_kind


def test_kueue_config_runs_out_of_cluster_on_loopback(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path, cache=tmp_path / "cache", ports=Ports(), versions=read_versions())
    cfg: dict[str, Any] = kueue.build_config(layout, tmp_path / "certs")
    assert cfg["internalCertManagement"] == {"enable": False}
    assert cfg["featureGates"] == {"VisibilityOnDemand": False}
    assert cfg["webhook"]["certDir"] == str(tmp_path / "certs")
    for addr in (cfg["health"]["healthProbeBindAddress"], cfg["metrics"]["bindAddress"]):
        assert addr.startswith("127.0.0.1:")


def test_kubeconfig_points_at_loopback_with_client_certs(tmp_path: Path) -> None:
    doc = json.loads(
        kubeconfig.build_kubeconfig(
            "https://127.0.0.1:6443", tmp_path / "ca.crt", tmp_path / "a.crt", tmp_path / "a.key", "admin"
        )
    )
    assert doc["clusters"][0]["cluster"] == {
        "server": "https://127.0.0.1:6443",
        "certificate-authority": str(tmp_path / "ca.crt"),
    }
    assert doc["users"][0]["user"]["client-key"] == str(tmp_path / "a.key")
    assert doc["current-context"] == "converged-local"
