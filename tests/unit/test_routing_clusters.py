"""Routing across several SlurmClusters: a cluster converged cannot vouch for (capacity unknown, or
unreachable at the daemon's last look) is a last resort, and a cluster without MPI gets no MPI step."""

from __future__ import annotations

from dataclasses import replace

from converged_bridge.api.workflowstep import Backend
from converged_bridge.routing import route, route_batch
from converged_bridge.routing.types import CapacityView, Decision, SlurmClusterView
from tests.unit.test_routing import CPU, KWOK, SLURM, W, req

HPC1 = replace(SLURM, name="hpc1")
BUSY_CPU = replace(CPU, cpus_idle=0, pending_jobs=40)
BUSY = replace(SLURM, name="hpc1", partitions=(BUSY_CPU,))
UNKNOWN = SlurmClusterView(name="hpc0", partitions=None, default_partition="cpu")
DOWN = replace(SLURM, name="hpc0", reachable=False)  # name sorts first: ties would pick it


def test_a_cluster_whose_capacity_is_unknown_loses_to_any_verified_wait_however_long() -> None:
    d = route(req(), CapacityView(slurm=(UNKNOWN, BUSY)), W)
    assert (d.slurm_cluster, d.decision) == ("hpc1", Decision.SHORTEST_WAIT)
    assert d.expected_wait_seconds is not None and d.expected_wait_seconds > 600
    assert "beats slurm hpc0/cpu (unverified)" in d.reason


def test_it_is_still_taken_when_nothing_else_can_run_the_step() -> None:
    d = route(req(), CapacityView(slurm=(UNKNOWN,)), W)
    assert (d.slurm_cluster, d.decision) == ("hpc0", Decision.UNVERIFIED)
    assert "capacity unknown" in d.reason


def test_an_unreachable_cluster_is_a_last_resort_and_says_why() -> None:
    d = route(req(), CapacityView(slurm=(DOWN, BUSY)), W)
    assert d.slurm_cluster == "hpc1"
    only = route(req(slurm_cluster="hpc0"), CapacityView(slurm=(DOWN, BUSY)), W)
    assert (only.slurm_cluster, only.decision, only.expected_wait_seconds) == (
        "hpc0",
        Decision.UNVERIFIED,
        None,
    )
    assert "cluster unreachable at the daemon's last look" in only.reason
    assert "waits until the cluster answers" in only.reason


def test_kubernetes_beats_an_unreachable_cluster_even_with_its_own_start_up() -> None:
    d = route(req(has_image=True), CapacityView(slurm=(DOWN,), kueue=(KWOK,)), W)
    assert d.backend == Backend.KUEUE


def test_a_cluster_without_mpi_gets_no_mpi_step_and_the_refusal_names_it() -> None:
    no_mpi = replace(SLURM, name="hpc2", mpi=False)
    capacity = CapacityView(slurm=(HPC1, no_mpi))
    d = route(req(mpi=True, nodes=2, tasks=2), capacity, W)
    assert d.slurm_cluster == "hpc1"
    refused = route(req(mpi=True, nodes=2, tasks=2, slurm_cluster="hpc2"), capacity, W)
    assert refused.backend is None
    assert "slurm hpc2: runs no MPI steps (its SlurmCluster sets mpi: false)" in refused.reason
    plain = route(req(slurm_cluster="hpc2"), capacity, W)
    assert plain.slurm_cluster == "hpc2"  # one task: not MPI, welcome there


def test_the_batch_router_keeps_unverified_clusters_last_and_charges_nothing_to_them() -> None:
    capacity = CapacityView(slurm=(DOWN, HPC1))
    decisions = route_batch([req() for _ in range(30)], capacity, W)
    assert {d.slurm_cluster for d in decisions} == {"hpc1"}
