"""The router: hard constraints first, then weighted expected wait; explicit choices win when feasible."""

from __future__ import annotations

import pytest

from converged_bridge.api.workflowstep import Backend, Operator, Resources
from converged_bridge.routing import (
    CapacityView,
    Decision,
    KueueFlavorView,
    KueueQueueView,
    Preference,
    SiteWeights,
    SlurmClusterView,
    SlurmPartitionView,
    StepRequest,
    route,
)

CPU = SlurmPartitionView(
    name="cpu", nodes=2, cpus_total=8, cpus_idle=8, mem_mib_per_node=7900, max_time_minutes=1440
)
GPU = SlurmPartitionView(
    name="gpu",
    nodes=1,
    cpus_total=4,
    cpus_idle=4,
    mem_mib_per_node=7900,
    gpus_total={"a100": 2},
    gpus_idle={"a100": 2},
    max_time_minutes=720,
)
SLURM = SlurmClusterView(name="site", partitions=(CPU, GPU), default_partition="cpu")
REAL = KueueQueueView(
    local_queue="team-a/real",
    cluster_queue="real",
    flavors=(KueueFlavorView(name="real", cpu_quota_milli=2000),),
)
KWOK = KueueQueueView(
    local_queue="team-a/default",
    cluster_queue="default",
    flavors=(
        KueueFlavorView(name="kwok", cpu_quota_milli=24000),
        KueueFlavorView(name="kwok-gpu", cpu_quota_milli=8000, gpu_quota=2, gpu_model="a100"),
    ),
)
BOTH = CapacityView(slurm=(SLURM,), kueue=(REAL, KWOK), operators=frozenset({Operator.JOB}))
W = SiteWeights()


SHAPE_FIELDS = ("cpus", "mem_mib", "gpus", "gpu_model", "nodes", "tasks", "runtime_minutes")


def req(**kw: object) -> StepRequest:
    """A request of rule r; the shape's fields (cpus, gpus, ...) go into its Resources."""
    shape = {k: kw.pop(k) for k in SHAPE_FIELDS if k in kw}
    return StepRequest(rule="r", shape=Resources(**shape), **kw)  # type: ignore[arg-type]


def test_cpu_step_on_idle_capacity_goes_to_slurm_cpu_not_the_gpu_partition() -> None:
    d = route(req(has_image=True), BOTH, W)
    assert (d.backend, d.slurm_cluster, d.slurm_partition) == (Backend.SLURM, "site", "cpu")
    assert d.decision == Decision.SHORTEST_WAIT
    assert "fits idle capacity" in d.reason and "\n" not in d.reason


def test_kueue_needs_an_image_so_without_one_slurm_is_the_only_side() -> None:
    d = route(req(), CapacityView(slurm=(SLURM,), kueue=(REAL,)), W)
    assert d.backend == Backend.SLURM and d.decision == Decision.SHORTEST_WAIT
    refused = route(req(preference=Preference.KUEUE), BOTH, W)
    assert refused.backend is None and refused.decision == Decision.REFUSED
    assert "no container image" in refused.reason and refused.reason.startswith("converged_backend=kueue")


def test_gpu_model_must_exist_on_the_side() -> None:
    d = route(req(gpus=1, gpu_model="a100"), BOTH, W)
    assert (d.backend, d.slurm_partition, d.decision) == (Backend.SLURM, "gpu", Decision.ONLY_FEASIBLE)
    assert "not slurm site/cpu: no a100 GPUs" in d.reason
    none = route(req(gpus=1, gpu_model="h100", has_image=True), BOTH, W)
    assert none.backend is None
    assert "no h100 GPUs" in none.reason and "no flavor with h100 GPUs" in none.reason


def test_gpu_step_on_kueue_picks_the_gpu_flavor_queue() -> None:
    d = route(req(gpus=1, gpu_model="a100", has_image=True, preference=Preference.KUEUE), BOTH, W)
    assert (d.backend, d.local_queue, d.decision) == (Backend.KUEUE, "team-a/default", Decision.EXPLICIT)


def test_runtime_over_the_partition_limit_is_refused_with_the_limit_named() -> None:
    d = route(req(gpus=1, runtime_minutes=800), BOTH, W)
    assert d.backend is None
    assert "runtime 800 min exceeds the time limit 720 min" in d.reason


def test_explicit_backend_wins_over_a_shorter_wait_elsewhere() -> None:
    busy = SlurmClusterView(
        name="site", partitions=(SlurmPartitionView(name="cpu", nodes=2, cpus_total=8, pending_jobs=50),)
    )
    capacity = CapacityView(slurm=(busy,), kueue=(KWOK,))
    auto = route(req(has_image=True), capacity, W)
    assert auto.backend == Backend.KUEUE and "beats slurm site/cpu" in auto.reason
    explicit = route(req(has_image=True, preference=Preference.SLURM), capacity, W)
    assert (explicit.backend, explicit.decision) == (Backend.SLURM, Decision.EXPLICIT)
    assert "expected wait" in explicit.reason


def test_expected_wait_grows_with_pending_work_and_weights_shift_the_choice() -> None:
    pending = SlurmClusterView(
        name="site",
        partitions=(SlurmPartitionView(name="cpu", nodes=2, cpus_total=8, cpus_idle=0, pending_jobs=3),),
    )
    capacity = CapacityView(slurm=(pending,), kueue=(KWOK,))
    d = route(req(has_image=True), capacity, W)
    assert d.backend == Backend.KUEUE and d.expected_wait_seconds == W.kueue_startup_seconds
    # 4 jobs ahead (3 pending + the full partition) over 8 slots of 600 s: 300 s + 2 s start-up
    forced = route(req(has_image=True, preference=Preference.SLURM), capacity, W)
    assert forced.expected_wait_seconds == pytest.approx(302.0)
    # a site that strongly prefers Slurm can outweigh that
    biased = route(req(has_image=True), capacity, SiteWeights(slurm=0.001, kueue=1.0))
    assert biased.backend == Backend.SLURM


def test_mpi_size_must_fit_the_partition_and_kubernetes_needs_an_mpi_operator() -> None:
    too_big = route(req(mpi=True, nodes=3, tasks=3, has_image=True), BOTH, W)
    assert too_big.backend is None
    assert "needs 3 nodes, has 2" in too_big.reason
    assert "operator mpijob is not installed" in too_big.reason
    with_operator = CapacityView(
        slurm=(SLURM,), kueue=(KWOK,), operators=frozenset({Operator.JOB, Operator.MPIJOB})
    )
    d = route(req(mpi=True, nodes=3, tasks=12, has_image=True), with_operator, W)
    assert (d.backend, d.operator) == (Backend.KUEUE, Operator.MPIJOB)
    fits = route(req(mpi=True, nodes=2, tasks=8), BOTH, W)
    assert (fits.backend, fits.slurm_partition) == (Backend.SLURM, "cpu")


def test_operators_other_than_job_run_on_kubernetes_only() -> None:
    d = route(req(operator=Operator.JOBSET, has_image=True), BOTH, W)
    assert d.backend is None
    assert "jobset runs on Kubernetes only" in d.reason and "jobset is not installed" in d.reason


def test_explicit_partition_must_exist_and_fit() -> None:
    assert route(req(slurm_partition="gpu"), BOTH, W).slurm_partition == "gpu"
    d = route(req(slurm_partition="bigmem"), BOTH, W)
    assert d.backend is None and "has no partition 'bigmem'" in d.reason


def test_down_partition_is_not_used() -> None:
    down = SlurmClusterView(
        name="site", partitions=(SlurmPartitionView(name="cpu", up=False, nodes=2, cpus_total=8),)
    )
    d = route(req(), CapacityView(slurm=(down,)), W)
    assert d.backend is None and "partition is not UP" in d.reason


def test_unknown_capacity_accepts_the_requested_partition_unverified() -> None:
    unknown = SlurmClusterView(name="site", partitions=None, default_partition="cpu")
    d = route(req(), CapacityView(slurm=(unknown,)), W)
    assert (d.backend, d.slurm_partition, d.decision) == (Backend.SLURM, "cpu", Decision.UNVERIFIED)
    assert "capacity unknown" in d.reason
    assert route(req(slurm_partition="gpu"), CapacityView(slurm=(unknown,)), W).slurm_partition == "gpu"


def test_no_backends_at_all_is_a_clear_refusal() -> None:
    d = route(req(), CapacityView(), W)
    assert d.backend is None and d.target == "-"
    assert "no SlurmCluster" in d.reason


def test_named_cluster_and_queue_restrict_the_candidates() -> None:
    d = route(req(slurm_cluster="other"), CapacityView(slurm=(SLURM,)), W)
    assert d.backend is None and "no SlurmCluster named 'other'" in d.reason
    q = route(req(has_image=True, preference=Preference.KUEUE, local_queue="team-a/real"), BOTH, W)
    assert q.local_queue == "team-a/real" and q.target == "team-a/real"


def test_route_is_deterministic_for_equal_candidates() -> None:
    twin = SlurmClusterView(name="a-site", partitions=(CPU,))
    capacity = CapacityView(slurm=(SLURM, twin))
    assert {route(req(), capacity, W).target for _ in range(5)} == {"a-site/cpu"}


def test_memory_beyond_every_flavor_quota_rules_kueue_out_with_the_figures() -> None:
    """A 64 GB step on a site whose only big-memory nodes are on Slurm: Kueue is no candidate."""
    small = KueueQueueView(
        local_queue="team-a/real",
        cluster_queue="real",
        flavors=(KueueFlavorView(name="real", cpu_quota_milli=2000, memory_quota_mib=8192),),
    )
    bigmem = SlurmPartitionView(
        name="bigmem", nodes=1, cpus_total=4, cpus_idle=4, mem_mib_per_node=257000, max_time_minutes=1440
    )
    site = CapacityView(
        slurm=(SlurmClusterView(name="hpc2", partitions=(bigmem,)),),
        kueue=(small,),
        operators=frozenset({Operator.JOB}),
    )
    d = route(req(has_image=True, mem_mib=64000), site, W)
    assert (d.backend, d.slurm_partition, d.decision) == (Backend.SLURM, "bigmem", Decision.ONLY_FEASIBLE)
    assert (
        "not kueue team-a/real: needs 64000 MiB of memory, the largest flavor quota is 8192 MiB" in d.reason
    )
    refused = route(req(has_image=True, mem_mib=64000, preference=Preference.KUEUE), site, W)
    assert refused.decision == Decision.REFUSED and "8192 MiB" in refused.reason
    # memory in use counts for the wait: a flavor with its memory taken has no free quota now
    busy = KueueFlavorView(name="real", cpu_quota_milli=2000, memory_quota_mib=8192, memory_used_mib=8000)
    fits = route(
        req(has_image=True, mem_mib=4000, preference=Preference.KUEUE),
        CapacityView(
            kueue=(KueueQueueView(local_queue="team-a/real", cluster_queue="real", flavors=(busy,)),),
        ),
        W,
    )
    assert fits.backend == Backend.KUEUE and "expected wait" in fits.reason
    # a ClusterQueue that does not cover memory sets no memory limit
    free = route(req(has_image=True, mem_mib=64000, preference=Preference.KUEUE), BOTH, W)
    assert free.backend == Backend.KUEUE
