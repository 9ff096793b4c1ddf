"""The plugin's placements: steps it routed count against the capacity snapshot until they settle."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from converged_bridge.routing import CapacityView, SiteWeights, StepRequest
from snakemake_executor_plugin_converged.placements import Placements
from tests.unit.clocks import ManualClock
from tests.unit.test_routing import SLURM

SNAPSHOT = CapacityView(slurm=(SLURM,))  # cpu: 8 idle CPUs, gpu: 4 idle CPUs (and 2 a100)
STEP = StepRequest(rule="r")


def place(placements: Placements, snapshot: CapacityView, n: int, first: int = 0) -> Counter[str]:
    seen: Counter[str] = Counter()
    for i in range(first, first + n):
        d = placements.route(STEP, snapshot)
        placements.placed(f"step-{i}", STEP, d)
        seen[d.target] += 1
    return seen


def test_one_job_at_a_time_a_burst_spreads_as_the_snapshot_fills() -> None:
    placements = Placements(SiteWeights(), settle_seconds=20, clock=ManualClock().monotonic)
    assert place(placements, SNAPSHOT, 12) == {"site/cpu": 8, "site/gpu": 4}


def test_a_new_snapshot_keeps_the_charges_it_cannot_show_yet() -> None:
    clock = ManualClock()
    placements = Placements(SiteWeights(), settle_seconds=20, clock=clock.monotonic)
    place(placements, SNAPSHOT, 8)
    clock.advance(5)
    fresh = replace(SNAPSHOT)  # read again, but the daemon has not mirrored our 8 steps yet
    assert placements.route(STEP, fresh).target == "site/gpu"
    clock.advance(20)  # settled: the snapshot read now counts them itself
    assert placements.route(STEP, replace(SNAPSHOT)).target == "site/cpu" and len(placements) == 0


def test_a_finished_step_gives_its_capacity_back_at_once() -> None:
    placements = Placements(SiteWeights(), settle_seconds=20, clock=ManualClock().monotonic)
    place(placements, SNAPSHOT, 12)
    assert placements.route(STEP, SNAPSHOT).expected_wait_seconds > 2.0  # type: ignore[operator]
    placements.finished("step-3")  # one of the cpu steps
    assert placements.route(STEP, SNAPSHOT).target == "site/cpu"
    assert placements.route(STEP, SNAPSHOT).expected_wait_seconds == 2.0
