"""The plan's simulation: list scheduling by critical path on DAGs whose optimal schedules are known.

Chains, fork-join and anything on unlimited capacity: the critical path. Independent equal steps on k
slots: ceil(n/k) rounds. Unit-time in-trees on m slots: highest level first is Hu's algorithm, optimal
(checked against a brute-force search). Any DAG: a feasible schedule (dependencies and every slot's
capacity respected) within Graham's bound. The same input in any order: the same schedule.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest

from converged_bridge.schedule import Machine, Need, Pool, SimStep, Slot, simulate_schedule

ONE = Need(cpus=1)


def machine(**pools: Pool) -> Machine:
    return Machine(pools=dict(pools), targets={name: name for name in pools})


def cpus(n: float, mem: float | None = None, slots: int = 1, **gpus: int) -> Pool:
    return Pool("p", tuple(Slot(cpus=n, mem_mib=mem, gpus=gpus) for _ in range(slots)))


def step(job: int, seconds: float, *up: int, target: str | None = "p", need: Need = ONE) -> SimStep:
    return SimStep(job_id=job, target=target, need=need, runtime_seconds=seconds, upstream=up)


def starts(steps: Sequence[SimStep], m: Machine, **kw: int) -> dict[int, float]:
    schedule = simulate_schedule(steps, m, **kw)
    return {job: e.start for job, e in sorted(schedule.estimates.items())}


def test_a_chain_takes_the_sum_of_its_steps() -> None:
    chain = [step(1, 1), step(2, 2, 1), step(3, 3, 2), step(4, 4, 3)]
    schedule = simulate_schedule(chain, machine(p=cpus(8)))
    assert schedule.makespan == 10
    assert [(e.ready, e.start, e.end) for e in schedule.estimates.values()] == [
        (0, 0, 1),
        (1, 1, 3),
        (3, 3, 6),
        (6, 6, 10),
    ]


def test_fork_join_with_room_for_every_branch_takes_the_critical_path() -> None:
    branches = [step(j, d, 1) for j, d in [(2, 3), (3, 7), (4, 2), (5, 4)]]
    steps = [step(1, 5), *branches, step(6, 1, 2, 3, 4, 5)]
    assert simulate_schedule(steps, machine(p=cpus(4))).makespan == 5 + 7 + 1


@pytest.mark.parametrize(("n", "k"), [(7, 3), (6, 3), (1, 4), (10, 1), (9, 2)])
def test_independent_equal_steps_on_k_slots_take_ceil_n_over_k_rounds(n: int, k: int) -> None:
    steps = [step(j, 10) for j in range(1, n + 1)]
    assert simulate_schedule(steps, machine(p=cpus(k))).makespan == -(-n // k) * 10


def test_the_longest_remaining_path_goes_first() -> None:
    # C and D have the lower ids, but A heads the longer path: FIFO would take 6, the optimum is 4
    steps = [step(1, 2), step(2, 2), step(3, 1), step(4, 3, 3)]
    assert starts(steps, machine(p=cpus(2))) == {1: 0, 2: 2, 3: 0, 4: 1}
    assert simulate_schedule(steps, machine(p=cpus(2))).makespan == 4


def seed_chains(gpus: int) -> tuple[list[SimStep], Machine]:
    """The seed's two chains: preprocess, postprocess (cpu) -> analysis (gpu) -> visualization (cpu)."""
    gpu = Need(cpus=1, gpus=1)
    steps = []
    for chain in (0, 1):
        base = chain * 4
        steps += [
            step(base + 1, 1, target="cpu"),
            step(base + 2, 1, base + 1, target="cpu"),
            step(base + 3, 2, base + 2, target="gpu", need=gpu),
            step(base + 4, 1, base + 3, target="cpu"),
        ]
    return steps, machine(cpu=cpus(2), gpu=Pool("gpu", (Slot(cpus=4, gpus={"a100": gpus}),)))


def test_the_seed_chains_share_one_gpu_optimally() -> None:
    steps, m = seed_chains(gpus=1)
    # the GPU cannot start before 2 and has 4 s of work, then one visualization: 7 is optimal
    schedule = simulate_schedule(steps, m)
    assert schedule.makespan == 7
    analyses = sorted((e.start, e.end) for j, e in schedule.estimates.items() if j in (3, 7))
    assert analyses == [(2, 4), (4, 6)]
    steps, m = seed_chains(gpus=2)
    assert simulate_schedule(steps, m).makespan == 5  # the critical path


def test_memory_limits_like_cpus() -> None:
    steps = [step(1, 10, need=Need(cpus=1, mem_mib=600)), step(2, 10, need=Need(cpus=1, mem_mib=600))]
    assert simulate_schedule(steps, machine(p=cpus(4, mem=1000))).makespan == 20
    assert simulate_schedule(steps, machine(p=cpus(4, mem=1200))).makespan == 10


def test_a_multi_node_step_needs_that_many_nodes_with_room() -> None:
    wide = Need(parts=2, cpus=4)
    steps = [step(1, 5), step(2, 5, need=wide), step(3, 5)]
    schedule = simulate_schedule(steps, machine(p=cpus(4, slots=2)))
    # step 1 and 3 share a node; the 2-node step waits until both nodes are free
    assert {j: e.start for j, e in schedule.estimates.items()} == {1: 0, 2: 5, 3: 0}
    assert schedule.oversized == ()


def test_gpus_of_the_model_asked_for() -> None:
    pool = Pool("p", (Slot(cpus=8, gpus={"a100": 1, "v100": 1}),))
    a100 = Need(cpus=1, gpus=1, gpu_model="a100")
    steps = [step(1, 10, need=a100), step(2, 10, need=a100), step(3, 10, need=Need(cpus=1, gpus=1))]
    assert starts(steps, machine(p=pool)) == {1: 0, 2: 10, 3: 0}


def test_a_step_bigger_than_its_target_runs_alone_there() -> None:
    steps = [step(1, 10, need=Need(cpus=8)), step(2, 10), step(3, 10)]
    schedule = simulate_schedule(steps, machine(p=cpus(4)))
    assert schedule.oversized == (1,)
    assert {j: e.start for j, e in schedule.estimates.items()} == {1: 0, 2: 10, 3: 10}


def test_a_target_of_unknown_capacity_does_not_limit() -> None:
    steps = [step(j, 10, target="elsewhere/cpu") for j in range(1, 6)] + [step(9, 10, target=None)]
    schedule = simulate_schedule(steps, machine(p=cpus(1)))
    assert schedule.makespan == 10 and schedule.unlimited == (1, 2, 3, 4, 5, 9)


def test_jobs_limit_caps_the_steps_at_once() -> None:
    steps = [step(j, 10) for j in range(1, 5)]
    assert simulate_schedule(steps, machine(p=cpus(8)), max_running=1).makespan == 40
    assert simulate_schedule(steps, machine(p=cpus(8)), max_running=3).makespan == 20


def test_startup_holds_the_resources_before_the_step_runs() -> None:
    slow = [SimStep(j, "p", ONE, 10, startup_seconds=2) for j in (1, 2)]
    schedule = simulate_schedule(slow, machine(p=cpus(1)))
    assert [(e.ready, e.start, e.end) for e in schedule.estimates.values()] == [(0, 2, 12), (0, 14, 24)]


def test_cycles_and_repeated_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="cycle"):
        simulate_schedule([step(1, 1, 2), step(2, 1, 1)], machine(p=cpus(1)))
    with pytest.raises(ValueError, match="unique"):
        simulate_schedule([step(1, 1), step(1, 2)], machine(p=cpus(1)))


def test_upstream_ids_outside_the_simulation_count_as_done() -> None:
    assert starts([step(5, 1, 3, 4)], machine(p=cpus(1))) == {5: 0}


def random_dag(rng: random.Random, n: int, edge: float) -> list[tuple[int, float, tuple[int, ...]]]:
    return [
        (j, float(rng.randint(1, 9)), tuple(u for u in range(1, j) if rng.random() < edge))
        for j in range(1, n + 1)
    ]


def test_the_same_input_in_any_order_gives_the_same_schedule() -> None:
    rng = random.Random(7)  # noqa: S311 - reproducible test data
    dag = random_dag(rng, 40, 0.08)
    steps = [step(j, d, *up, need=Need(cpus=rng.choice([1, 2, 3]))) for j, d, up in dag]
    first = simulate_schedule(steps, machine(p=cpus(4, slots=2)))
    for _ in range(5):
        rng.shuffle(steps)
        assert simulate_schedule(steps, machine(p=cpus(4, slots=2))) == first


@pytest.mark.parametrize("seed", range(30))
def test_random_dags_get_feasible_schedules_within_grahams_bound(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    m = rng.randint(1, 4)
    dag = random_dag(rng, rng.randint(1, 40), rng.choice([0.0, 0.05, 0.2]))
    steps = [step(j, d, *up) for j, d, up in dag]
    schedule = simulate_schedule(steps, machine(p=cpus(m)))
    est = schedule.estimates
    for j, _, up in dag:
        assert all(est[j].start >= est[u].end for u in up)
    moments = sorted({e.start for e in est.values()})
    assert all(sum(1 for e in est.values() if e.start <= t < e.end) <= m for t in moments)
    total = sum(d for _, d, _ in dag)
    longest: dict[int, float] = {}
    for j, d, up in dag:
        longest[j] = d + max((longest[u] for u in up), default=0.0)
    critical = max(longest.values())
    assert max(critical, total / m) <= schedule.makespan <= total / m + (1 - 1 / m) * critical + 1e-9


def brute_force_unit_makespan(parents: dict[int, tuple[int, ...]], m: int) -> int:
    """The optimal makespan of unit-time steps on m slots, by breadth-first search over what is done."""
    everything = frozenset(parents)
    frontier = {frozenset[int]()}
    rounds = 0
    while everything not in frontier:
        following = set()
        for done in frontier:
            ready = [j for j in parents if j not in done and set(parents[j]) <= done]
            for chosen in itertools.combinations(ready, min(m, len(ready))):
                following.add(done | set(chosen))
        frontier = following
        rounds += 1
    return rounds


@pytest.mark.parametrize("seed", range(25))
def test_unit_time_in_trees_are_scheduled_optimally(seed: int) -> None:
    """Hu (1961): on an in-tree of unit steps, highest level first is optimal on any number of slots."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    n = rng.randint(2, 11)
    # job 1 is the root; every other job feeds one job with a lower id
    feeds = {j: rng.randint(1, j - 1) for j in range(2, n + 1)}
    parents = {j: tuple(c for c, p in feeds.items() if p == j) for j in range(1, n + 1)}
    m = rng.randint(2, 3)
    steps = [step(j, 1, *parents[j]) for j in parents]
    assert simulate_schedule(steps, machine(p=cpus(m))).makespan == brute_force_unit_makespan(parents, m)
