"""Capacity snapshots parsed from real Slurm answers: slurmrestd v0.0.38 (22.05) and v0.0.40-42 (24.11),
`sinfo --json` of both releases, `scontrol show partition --oneliner` of 22.05.

The 22.05 and 24.11 clusters were captured in the same situation (README of each folder): c1 fully
allocated, c2 idle, g1 running a job on both A100s with 1 CPU / 512 MiB, 2 running and 3 pending jobs in
`cpu`, 1 running and 1 pending in `gpu`. Every source must say the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from converged_bridge.api.slurmcluster import PartitionState
from converged_bridge.slurm.capacity import (
    CapacitySnapshot,
    PartitionSnapshot,
    Resources,
    build_capacity_snapshot,
    count_jobs,
    parse_gres_gpus,
    parse_nodes_v0038,
    parse_nodes_v0040,
    parse_partitions,
    parse_scontrol_partitions,
    parse_sinfo_json,
)
from converged_bridge.slurm.cli import parse_squeue_json
from converged_bridge.slurm.jobs import SlurmParseError, parse_jobs_v0038, parse_jobs_v0040
from converged_bridge.slurm.restd import RestdTransport

DATA = Path(__file__).resolve().parents[1] / "data"
D22 = DATA / "slurm-22.05"
D24 = DATA / "slurm-24.11"

CAPTURED = (
    PartitionSnapshot(
        name="cpu",
        state=PartitionState.UP,
        total=Resources(nodes=2, cpus=8, memory_mib=15800, gpus={}),
        idle=Resources(nodes=1, cpus=4, memory_mib=15800 - 2048, gpus={}),
        max_time_minutes=1440,
        running_jobs=2,
        pending_jobs=3,
    ),
    PartitionSnapshot(
        name="gpu",
        state=PartitionState.UP,
        total=Resources(nodes=1, cpus=4, memory_mib=7900, gpus={"a100": 2}),
        idle=Resources(nodes=0, cpus=3, memory_mib=7900 - 512, gpus={"a100": 0}),
        max_time_minutes=720,
        running_jobs=1,
        pending_jobs=1,
    ),
)


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def test_restd_v0038() -> None:
    snap = build_capacity_snapshot(
        parse_nodes_v0038(load(D22 / "restd-v0.0.38-nodes.json")),
        parse_partitions(load(D22 / "restd-v0.0.38-partitions.json")),
        parse_jobs_v0038(load(D22 / "restd-v0.0.38-jobs.json")),
    )
    assert snap == CapacitySnapshot("22.05.8", "openapi/v0.0.38", CAPTURED)


@pytest.mark.parametrize("version", ["v0.0.40", "v0.0.41", "v0.0.42"])
def test_restd_v0040_and_later(version: str) -> None:
    snap = build_capacity_snapshot(
        parse_nodes_v0040(load(D24 / f"restd-{version}-nodes.json")),
        parse_partitions(load(D24 / f"restd-{version}-partitions.json")),
        parse_jobs_v0040(load(D24 / f"restd-{version}-jobs.json")),
    )
    assert snap == CapacitySnapshot("24.11.5", f"data_parser/{version}", CAPTURED)


def test_sinfo_2205_needs_scontrol_for_partitions() -> None:
    reading = parse_sinfo_json(load(D22 / "sinfo.json"))
    assert not reading.has_partitions
    jobs = parse_squeue_json(load(D22 / "squeue.json"))
    # the oneliner of the live 22.05 cluster: same partitions and limits as the capture
    partitions = parse_scontrol_partitions((D22 / "scontrol-show-partition-oneliner.txt").read_text())
    assert [(p.name, p.state, p.max_time_minutes) for p in partitions] == [
        ("cpu", PartitionState.UP, 1440),
        ("gpu", PartitionState.UP, 720),
    ]
    assert build_capacity_snapshot(reading, partitions, jobs).partitions == CAPTURED


def test_sinfo_2411_groups_carry_their_partition() -> None:
    reading = parse_sinfo_json(load(D24 / "sinfo.json"))
    assert reading.has_partitions
    assert [len(g.names) for g in reading.nodes] == [1, 1, 1]
    snap = build_capacity_snapshot(reading, (), parse_squeue_json(load(D24 / "squeue.json")))
    assert snap == CapacitySnapshot("24.11.5", "data_parser/v0.0.42", CAPTURED)


def test_sinfo_2411_group_of_several_nodes_scales_per_node_figures() -> None:
    doc = load(D24 / "sinfo.json")
    idle_cpu = next(e for e in doc["sinfo"] if e["nodes"]["nodes"] == ["c2"])
    # the same group as if it held three alike idle nodes
    idle_cpu["nodes"].update(total=3, idle=3, nodes=["c2", "c3", "c4"])
    idle_cpu["cpus"].update(total=12, idle=12)
    gpu = next(e for e in doc["sinfo"] if e["nodes"]["nodes"] == ["g1"])
    gpu["nodes"].update(total=2, nodes=["g1", "g2"])
    gpu["cpus"].update(total=8, allocated=2)
    gpu["memory"]["allocated"] = 1024
    snap = build_capacity_snapshot(parse_sinfo_json(doc), (), [])
    cpu, gpus = snap.partitions
    assert cpu.total == Resources(nodes=4, cpus=16, memory_mib=4 * 7900, gpus={})
    assert cpu.idle == Resources(nodes=3, cpus=12, memory_mib=4 * 7900 - 2048, gpus={})
    assert gpus.total == Resources(nodes=2, cpus=8, memory_mib=2 * 7900, gpus={"a100": 4})
    assert gpus.idle == Resources(nodes=0, cpus=6, memory_mib=2 * 7900 - 1024, gpus={"a100": 0})


def test_drained_node_leaves_total_and_idle_and_partition_state_follows_slurm() -> None:
    # live 22.05 capture: c1 draining (mixed + DRAIN) while a job ran, partition gpu set DOWN
    partitions = parse_scontrol_partitions(
        (D22 / "scontrol-show-partition-oneliner-gpu-down.txt").read_text()
    )
    for reading in (
        parse_sinfo_json(load(D22 / "sinfo-c1-drained.json")),
        parse_nodes_v0038(load(D22 / "restd-v0.0.38-nodes-c1-drained.json")),
    ):
        cpu, gpu = build_capacity_snapshot(reading, partitions, []).partitions
        assert cpu.total == Resources(nodes=1, cpus=4, memory_mib=7900, gpus={})
        assert cpu.idle.nodes == 1 and cpu.idle.cpus == 4
        assert gpu.state == PartitionState.DOWN
        assert gpu.total.gpus == {"a100": 2}
    restd = parse_partitions(load(D22 / "restd-v0.0.38-partitions-gpu-down.json"))
    assert [p.state for p in restd] == [PartitionState.UP, PartitionState.DOWN]


def test_not_responding_and_unknown_stay_in_service_as_slurm_keeps_scheduling_there() -> None:
    doc = load(D24 / "restd-v0.0.42-nodes.json")
    doc["nodes"][1]["state"] = ["IDLE", "NOT_RESPONDING"]
    doc["nodes"][0]["state"] = ["UNKNOWN"]
    cpu = build_capacity_snapshot(parse_nodes_v0040(doc), (), []).partitions[0]
    assert cpu.total.nodes == 2 and cpu.total.cpus == 8


def test_down_states_in_v0040_lists() -> None:
    doc = load(D24 / "restd-v0.0.42-nodes.json")
    doc["nodes"][1]["state"] = ["IDLE", "DRAIN"]  # c2 drained
    doc["nodes"][0]["state"] = ["DOWN", "NOT_RESPONDING"]  # c1 down
    cpu = build_capacity_snapshot(parse_nodes_v0040(doc), (), []).partitions[0]
    assert cpu.total == Resources() and cpu.idle == Resources()


@pytest.mark.parametrize(
    ("text", "gpus"),
    [
        ("gpu:a100:2", {"a100": 2}),
        ("gpu:a100:2(S:0-1)", {"a100": 2}),
        ("gpu:a100:2(IDX:0-1)", {"a100": 2}),
        ("gpu:a100:1(IDX:0,2),gpu:v100:3(IDX:0-2)", {"a100": 1, "v100": 3}),
        ("gpu:a100:0(IDX:N/A)", {"a100": 0}),
        ("gpu:0", {"gpu": 0}),
        ("gpu:4", {"gpu": 4}),
        ("gpu:(null):1(IDX:0)", {"gpu": 1}),
        ("mps:100,gpu:h100:8(S:0-1),shard:16", {"h100": 8}),
        ("", {}),
        ("(null)", {}),
        ("N/A", {}),
    ],
)
def test_parse_gres_gpus(text: str, gpus: dict[str, int]) -> None:
    assert parse_gres_gpus(text) == gpus


def test_job_counts_from_both_dialects_agree() -> None:
    counts22 = count_jobs(parse_jobs_v0038(load(D22 / "restd-v0.0.38-jobs.json")))
    counts24 = count_jobs(parse_squeue_json(load(D24 / "squeue.json")))
    assert counts22 == counts24 == {"cpu": (2, 3), "gpu": (1, 1)}


def test_unreadable_answers_raise_parse_errors() -> None:
    with pytest.raises(SlurmParseError):
        parse_nodes_v0038({"meta": {}})
    with pytest.raises(SlurmParseError):
        parse_sinfo_json({"meta": {}})
    with pytest.raises(SlurmParseError):
        parse_partitions({"partitions": [{"state": "UP"}]})


# --- the transport: one listing each of nodes and jobs per call, partitions when asked ---
def restd_serving(version: str, folder: Path) -> tuple[RestdTransport, list[str]]:
    paths: list[str] = []
    files = {
        "/openapi/v3": folder / "restd-openapi-v3.json",
        f"/slurm/{version}/nodes": folder / f"restd-{version}-nodes.json",
        f"/slurm/{version}/partitions": folder / f"restd-{version}-partitions.json",
        f"/slurm/{version}/jobs": folder / f"restd-{version}-jobs.json",
    }

    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json=load(files[request.url.path]))

    client = httpx.Client(base_url="http://restd", transport=httpx.MockTransport(handle))
    restd = RestdTransport("http://restd", lambda user: "token", service_user="root", client=client)
    return restd, paths


@pytest.mark.parametrize(("version", "folder"), [("v0.0.38", D22), ("v0.0.42", D24)])
def test_restd_query_capacity_requests(version: str, folder: Path) -> None:
    restd, paths = restd_serving(version, folder)
    first = restd.query_capacity()
    assert first.partitions == CAPTURED
    assert paths == ["/openapi/v3", *(f"/slurm/{version}/{p}" for p in ("nodes", "partitions", "jobs"))]
    paths.clear()
    assert restd.query_capacity(refresh_partitions=False) == first
    assert paths == [f"/slurm/{version}/nodes", f"/slurm/{version}/jobs"]
