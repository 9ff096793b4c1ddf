"""The plan's parts around the simulation: the machine from a captured capacity snapshot, a step's need
on each backend, the named groups, CPU/memory/GPU-hours, and the plan's annotations on a step."""

from __future__ import annotations

from converged_bridge.api.workflowstep import Backend, Resources
from converged_bridge.routing import CapacityView, SlurmPartitionView
from converged_bridge.routing.capacity import map_kueue_queue, map_slurm_clusters
from converged_bridge.routing.slurm import build_node_slots
from converged_bridge.schedule import (
    DEPENDS_ON_MAX,
    GroupMember,
    Need,
    Slot,
    StepEstimate,
    Usage,
    build_machine,
    build_need,
    build_plan_annotations,
    build_usage,
    parse_plan_annotations,
    plan_groups,
    sum_usage,
)
from tests.unit.test_routing_capacity import load


def captured_capacity() -> CapacityView:
    """The local cluster as captured: Slurm cpu (2 nodes, 8 CPUs) and gpu (1 node, 4 CPUs, 2 a100),
    Kueue's default ClusterQueue (flavors kwok: 24 CPUs; kwok-gpu: 8 CPUs, 2 a100)."""
    slurm = map_slurm_clusters([load("slurmcluster-with-status.json")], "team-a")
    queue = map_kueue_queue(
        load("localqueue-default.json"),
        load("clusterqueue-default.json"),
        load("resourceflavors.json")["items"],
    )
    return CapacityView(slurm=slurm, kueue=(queue,))


def test_machine_of_the_captured_cluster() -> None:
    machine = build_machine(captured_capacity())
    assert dict(machine.targets) == {
        "converged-plugin/cpu": "slurm:converged-plugin/cpu",
        "converged-plugin/gpu": "slurm:converged-plugin/gpu",
        "default/default": "kueue:default",
    }
    assert machine.pools["slurm:converged-plugin/cpu"].slots == (Slot(4, 7900), Slot(4, 7900))
    assert machine.pools["slurm:converged-plugin/gpu"].slots == (Slot(4, 7900, {"a100": 2}),)
    assert machine.pools["kueue:default"].slots == (Slot(24.0), Slot(8.0, None, {"a100": 2}))
    assert machine.pool_of("other/cpu") is None and machine.pool_of(None) is None


def test_queues_of_one_cluster_queue_share_its_pool_and_unknown_clusters_have_none() -> None:
    capacity = captured_capacity()
    (queue,) = capacity.kueue
    (cluster,) = capacity.slurm
    twin = type(queue)(local_queue="team-a/other", cluster_queue=queue.cluster_queue, flavors=queue.flavors)
    bare = type(cluster)(name="bare", partitions=None)
    machine = build_machine(CapacityView(slurm=(cluster, bare), kueue=(queue, twin)))
    assert machine.pool_of("team-a/other") == machine.pool_of("default/default") == "kueue:default"
    assert len(machine.pools) == 3 and not any(t.startswith("bare/") for t in machine.targets)


def test_node_slots_share_out_totals() -> None:
    part = SlurmPartitionView("p", nodes=3, cpus_total=10, gpus_total={"A100": 4}, mem_mib_per_node=100)
    assert build_node_slots(part) == (
        Slot(4, 100, {"a100": 2}),
        Slot(3, 100, {"a100": 1}),
        Slot(3, 100, {"a100": 1}),
    )
    assert build_node_slots(SlurmPartitionView("empty")) == ()


def test_need_per_node_on_slurm_and_one_charge_on_kueue() -> None:
    mpi = Resources(cpus=2, tasks=6, nodes=2, mem_mib=1000, gpus=1, gpu_model="A100")
    assert build_need(mpi, Backend.SLURM) == Need(parts=2, cpus=6, mem_mib=1000, gpus=1, gpu_model="a100")
    assert build_need(mpi, Backend.KUEUE) == Need(parts=1, cpus=12, mem_mib=2000, gpus=2, gpu_model="a100")
    assert build_need(Resources(), Backend.SLURM) == Need(parts=1, cpus=1, mem_mib=0, gpus=0)


def member(job: int, level: int, rule: str, target: str, shape: str = "1 cpu") -> GroupMember:
    return GroupMember(job, level, rule, "slurm", target, shape)


def test_groups_are_named_runs_of_one_shape_in_start_order() -> None:
    chains = [
        member(8, 3, "visualization", "s/cpu"),
        member(1, 0, "preprocess", "s/cpu"),
        member(5, 2, "analysis", "s/gpu", "1 cpu, 1 gpu"),
        member(3, 1, "postprocess", "s/cpu"),
        member(2, 0, "preprocess", "s/cpu"),
        member(4, 1, "postprocess", "s/cpu"),
        member(6, 2, "analysis", "s/gpu", "1 cpu, 1 gpu"),
        member(7, 3, "visualization", "s/cpu"),
    ]
    groups = plan_groups(chains)
    assert [(g.name, g.target, g.job_ids) for g in groups] == [
        ("g1", "s/cpu", (1, 2, 3, 4)),
        ("g2", "s/gpu", (5, 6)),
        ("g3", "s/cpu", (7, 8)),
    ]
    other_image = [member(1, 0, "a", "s/cpu", "1 cpu, image x"), member(2, 1, "b", "s/cpu", "1 cpu, image y")]
    assert len(plan_groups(other_image)) == 2
    assert plan_groups([]) == ()


def test_a_fan_out_the_router_spread_makes_one_group_per_target() -> None:
    # job ids alternate between the targets the router chose: still one group each, not one per switch
    fan_out = [member(j, 0, "step", "s/cpu" if j % 3 else "s/gpu") for j in range(1, 13)]
    fan_out += [member(13, 1, "gather", "s/cpu"), member(14, 1, "gather", "s/gpu")]
    groups = plan_groups(fan_out)
    assert [(g.name, g.target, g.job_ids) for g in groups] == [
        ("g1", "s/cpu", (1, 2, 4, 5, 7, 8, 10, 11)),
        ("g2", "s/gpu", (3, 6, 9, 12, 14)),  # the next level starts with the shape this one ended with
        ("g3", "s/cpu", (13,)),
    ]


def test_usage_counts_every_task_node_and_gpu() -> None:
    mpi = Resources(cpus=2, tasks=4, nodes=2, mem_mib=2048, gpus=1)
    assert build_usage(mpi, 1800) == Usage(cpu_hours=4.0, mem_gib_hours=2.0, gpu_hours=1.0)
    assert build_usage(Resources(), -5) == Usage()
    totals = sum_usage(
        [
            (("slurm", "s/gpu"), Usage(1, 2, 3)),
            (("kueue", "q"), Usage(1, 0, 0)),
            (("slurm", "s/gpu"), Usage(1, 1, 1)),
        ]
    )
    assert list(totals.items()) == [(("kueue", "q"), Usage(1, 0, 0)), (("slurm", "s/gpu"), Usage(2, 3, 4))]


def test_plan_annotations_round_trip() -> None:
    estimate = StepEstimate(7, 60.0, 62.4, 121.6)
    notes = build_plan_annotations([4, 3, 4], estimate, "g2")
    assert notes == {
        "converged.dev/depends-on": "3,4",
        "converged.dev/plan-group": "g2",
        "converged.dev/estimate-ready": "60",
        "converged.dev/estimate-start": "62",
        "converged.dev/estimate-end": "122",
    }
    parsed = parse_plan_annotations(notes, 7)
    assert (parsed.upstream, parsed.unlisted, parsed.group) == ((3, 4), 0, "g2")
    assert parsed.estimate == StepEstimate(7, 60, 62, 122)
    assert build_plan_annotations([]) == {}


def test_many_upstream_ids_are_counted_not_listed() -> None:
    notes = build_plan_annotations(range(1000))
    assert len(notes["converged.dev/depends-on"]) < 1100
    parsed = parse_plan_annotations(notes, 1000)
    assert len(parsed.upstream) == DEPENDS_ON_MAX and parsed.unlisted == 1000 - DEPENDS_ON_MAX


def test_malformed_plan_annotations_are_left_out() -> None:
    bad = {
        "converged.dev/depends-on": "3,x,,-1, 5",
        "converged.dev/estimate-ready": "10",
        "converged.dev/estimate-start": "inf",
        "converged.dev/estimate-end": "5",
    }
    parsed = parse_plan_annotations(bad, 1)
    assert parsed.upstream == (3, 5) and parsed.estimate is None and parsed.group is None
    backwards = {**bad, "converged.dev/estimate-start": "20"}
    assert parse_plan_annotations(backwards, 1).estimate is None
