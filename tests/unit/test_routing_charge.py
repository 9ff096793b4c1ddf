"""Charging placed steps against one capacity snapshot, so a burst of equal steps spreads out.

The site is the local cluster's shape: Slurm `cpu` (2 nodes, 8 CPUs) and `gpu` (1 node, 4 CPUs, 2 a100),
a Kueue queue on the real node (2 CPUs) and one on kwok nodes (24 CPUs, a 2-GPU flavor).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from converged_bridge.api.workflowstep import Backend
from converged_bridge.routing import (
    CapacityView,
    Decision,
    Preference,
    RouteDecision,
    SiteWeights,
    SlurmClusterView,
    charge,
    route,
    route_batch,
)
from tests.unit.test_routing import BOTH, CPU, GPU, REAL, SLURM, req

W = SiteWeights()
SLURM_ONLY = CapacityView(slurm=(SLURM,))


def partitions(view: CapacityView) -> dict[str, object]:
    (cluster,) = view.slurm
    assert cluster.partitions is not None
    return {p.name: p for p in cluster.partitions}


def targets(decisions: Sequence[RouteDecision]) -> Counter[str]:
    return Counter(d.target for d in decisions)


def test_a_step_that_fits_takes_idle_cpus_and_the_rest_queue() -> None:
    d = route(req(cpus=3), SLURM_ONLY, W)
    assert d.slurm_partition == "cpu"
    after = partitions(charge(SLURM_ONLY, req(cpus=3), d, count=5))["cpu"]
    # 8 idle CPUs hold two 3-CPU steps; the other three wait behind them
    assert (after.cpus_idle, after.running_jobs, after.pending_jobs) == (2, 2, 3)  # type: ignore[attr-defined]
    assert partitions(charge(SLURM_ONLY, req(cpus=3), d, count=4))["gpu"] == GPU  # untouched


def test_gpu_steps_take_gpus_of_their_model() -> None:
    gpu_step = req(gpus=1, gpu_model="a100")
    d = route(gpu_step, SLURM_ONLY, W)
    after = partitions(charge(SLURM_ONLY, gpu_step, d, count=3))["gpu"]
    assert after.gpus_idle == {"a100": 0} and after.cpus_idle == 2 and after.pending_jobs == 1  # type: ignore[attr-defined]


def test_charging_only_lengthens_the_wait_at_the_target() -> None:
    step = req(slurm_partition="cpu")  # pinned: every decision is the wait at cpu
    d = route(step, SLURM_ONLY, W)
    waits = []
    view = SLURM_ONLY
    for _ in range(12):
        view = charge(view, step, d)
        waits.append(route(step, view, W).expected_wait_seconds)
    assert waits == sorted(waits)  # type: ignore[type-var]
    assert waits[0] == d.expected_wait_seconds and waits[-1] > waits[0]  # type: ignore[operator]


def test_kueue_charges_flavors_in_order_then_pending() -> None:
    d = route(req(preference=Preference.KUEUE, cpus=8, has_image=True, local_queue="team-a/default"), BOTH, W)
    step = req(preference=Preference.KUEUE, cpus=8, has_image=True, local_queue="team-a/default")
    view = charge(BOTH, step, d, count=5)
    (queue,) = [q for q in view.kueue if q.local_queue == "team-a/default"]
    kwok, kwok_gpu = queue.flavors
    # 24 CPUs of kwok hold three 8-CPU steps, the gpu flavor's 8 CPUs one more; the fifth pends
    assert (kwok.cpu_used_milli, kwok_gpu.cpu_used_milli) == (24000, 8000)
    assert (queue.admitted_workloads, queue.pending_workloads) == (4, 1)
    assert [q for q in view.kueue if q.local_queue == "team-a/real"] == [REAL]


def test_refusals_and_unverified_decisions_charge_nothing() -> None:
    refused = route(req(gpus=1, gpu_model="h100"), SLURM_ONLY, W)
    assert refused.backend is None and charge(SLURM_ONLY, req(gpus=1), refused) is SLURM_ONLY
    unknown = CapacityView(slurm=(SlurmClusterView(name="site", partitions=None),))
    d = route(req(), unknown, W)
    assert d.decision == Decision.UNVERIFIED and charge(unknown, req(), d) is unknown


def test_a_burst_of_equal_steps_fills_idle_slurm_then_spreads_over_both_sides() -> None:
    step = req(has_image=True)
    decisions = route_batch([step] * 40, BOTH, W)
    seen = targets(decisions)
    # 8 + 4 idle CPUs on Slurm (2 s start-up), then the free quota of Kueue (3 s): nothing queues
    assert seen == {"site/cpu": 8, "site/gpu": 4, "team-a/default": 28}
    assert all(d.expected_wait_seconds == route(step, BOTH, W).expected_wait_seconds for d in decisions[:8])
    # without charging, every one of the 40 would have gone where the first did
    assert targets([route(step, BOTH, W)] * 40) == {"site/cpu": 40}


def test_when_everything_is_full_steps_queue_where_the_weighted_wait_is_shortest() -> None:
    step = req()
    decisions = route_batch([step] * 60, SLURM_ONLY, W)
    seen = targets(decisions)
    assert seen["site/cpu"] + seen["site/gpu"] == 60
    # queued work is shared by slots: cpu has twice gpu's CPUs, so about twice its share
    assert 1.6 <= seen["site/cpu"] / seen["site/gpu"] <= 2.5, seen
    assert decisions[-1].expected_wait_seconds > 0  # type: ignore[operator]
    assert "expected wait" in decisions[-1].reason


def test_the_burst_herded_in_makespan_run_b_no_longer_does() -> None:
    # what the router saw then: cpu busy with another benchmark's queue, gpu idle (docs/benchmarks.md)
    busy = replace(CPU, cpus_idle=0, pending_jobs=30, running_jobs=8)
    view = CapacityView(slurm=(replace(SLURM, partitions=(busy, GPU)),))
    seen = targets(route_batch([req()] * 50, view, W))
    assert seen["site/gpu"] < 50 and seen["site/cpu"] > 0, seen


def test_unchanged_shapes_are_decided_once_while_their_target_has_room() -> None:
    step = req()
    decisions = route_batch([step] * 8, SLURM_ONLY, W)
    assert len({id(d) for d in decisions}) == 1  # one route() for the 8 that fit cpu's idle CPUs


def test_other_shapes_are_not_moved_by_a_charge_elsewhere() -> None:
    small, gpu = req(), req(gpus=1, gpu_model="a100")
    decisions = route_batch([gpu, small, gpu, small], SLURM_ONLY, W)
    assert [d.target for d in decisions] == ["site/gpu", "site/cpu", "site/gpu", "site/cpu"]
    assert decisions[0].backend == Backend.SLURM


def test_the_batch_router_places_exactly_as_routing_and_charging_one_step_at_a_time() -> None:
    rng = random.Random(3)  # noqa: S311 - reproducible test data
    shapes = [
        req(),
        req(cpus=2, has_image=True),
        req(gpus=1, gpu_model="a100"),
        req(gpus=1, has_image=True),
        req(cpus=4, mem_mib=4000, has_image=True),
        req(preference=Preference.KUEUE, has_image=True),
    ]
    busy = replace(CPU, cpus_idle=3, pending_jobs=5)
    view = replace(BOTH, slurm=(replace(SLURM, partitions=(busy, GPU)),))
    requests = [shapes[rng.randrange(len(shapes))] for _ in range(300)]
    expected = []
    for r in requests:  # the definition: route against the snapshot as charged so far
        d = route(r, view, W)
        expected.append((d.target, d.expected_wait_seconds))
        view = charge(view, r, d)
    batched = route_batch(requests, replace(BOTH, slurm=(replace(SLURM, partitions=(busy, GPU)),)), W)
    assert [(d.target, d.expected_wait_seconds) for d in batched] == expected
    assert len(targets(batched)) == 4


def test_kueue_steps_are_admitted_only_as_far_as_the_memory_quota_goes() -> None:
    """The local Kueue's real flavor: 2 CPUs and 8 GiB; 3 GiB steps of one CPU fit two at a time by CPU
    and by memory, 5 GiB steps only one at a time, by memory."""
    real = replace(REAL, flavors=(replace(REAL.flavors[0], memory_quota_mib=8192),))
    kueue = CapacityView(kueue=(real,))
    for mem, admitted in ((3072, 2), (5120, 1)):
        step = req(has_image=True, mem_mib=mem, preference=Preference.KUEUE)
        (queue,) = charge(kueue, step, route(step, kueue, W), count=3).kueue
        assert (queue.admitted_workloads, queue.pending_workloads) == (admitted, 3 - admitted)
        assert queue.flavors[0].memory_used_mib == admitted * mem
