"""Benchmark (issue 16): the plan's simulation and the run's report at 10,000 steps. Pure CPU, no cluster.

- simulate: 10,000 steps in 5,000 map -> reduce pairs and a final step waiting for all, of 1 or 2 CPUs
  and 1-10 min, spread over the captured local capacity (tests/data/plugin: Slurm cpu and gpu, Kueue's
  default ClusterQueue), list-scheduled by `simulate_schedule`.
- report: a finished run of ~10,000 WorkflowSteps (copies of tests/unit/runs' seed run, made through the
  plugin's manifest and the controller's status builder) read as records and built into the HTML page.
Best of `--repeat` runs.

Usage: .venv/bin/python bench/plan_report.py [--steps 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converged_bridge.api.workflowstep import Backend, Resources
from converged_bridge.report.html import build_report
from converged_bridge.report.record import map_run_records
from converged_bridge.schedule import SimStep, build_machine, build_need, simulate_schedule
from tests.unit.runs import T0, seed_run
from tests.unit.test_schedule_parts import captured_capacity


def dag(n: int) -> list[SimStep]:
    rng = random.Random(1)  # noqa: S311 - reproducible benchmark data
    targets = ["converged-plugin/cpu", "converged-plugin/gpu", "default/default"]
    steps = []
    for i in range(1, n + 1):
        target = rng.choice(targets)
        backend = Backend.KUEUE if target == "default/default" else Backend.SLURM
        need = build_need(Resources(cpus=rng.choice([1, 2]), mem_mib=500), backend)
        steps.append(SimStep(i, target, need, 60.0 * rng.randint(1, 10), (i - 1,) if i % 2 == 0 else (), 2.0))
    final = build_need(Resources(), Backend.SLURM)
    steps.append(SimStep(n + 1, targets[0], final, 60.0, tuple(range(1, n + 1)), 2.0))
    return steps


def run_objects(n: int) -> list[dict[str, Any]]:
    base = seed_run()
    out = []
    for k in range(n // len(base) + 1):
        for obj in base:
            c = copy.deepcopy(obj)
            c["metadata"]["name"] += f"-{k}"
            c["spec"]["workflow"]["jobId"] += len(base) * k
            notes = c["metadata"]["annotations"]
            if "converged.dev/depends-on" in notes:
                ids = notes["converged.dev/depends-on"].split(",")
                notes["converged.dev/depends-on"] = ",".join(str(int(i) + len(base) * k) for i in ids)
            out.append(c)
    return out[:n]


def best(repeat: int, work: Any) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    steps, machine = dag(args.steps), build_machine(captured_capacity())
    simulate = best(args.repeat, lambda: simulate_schedule(steps, machine))
    objects = run_objects(args.steps)
    page: list[str] = []

    def report() -> None:
        records, _ = map_run_records(objects)
        page[:] = [build_report(records, run_id="x", namespace="y", generated_at=T0 + timedelta(seconds=200))]

    built = best(args.repeat, report)
    print(f"simulate {len(steps)} steps: {simulate * 1000:.0f} ms")
    print(f"report of {len(objects)} steps (read + build): {built * 1000:.0f} ms, {len(page[0]) // 1024} KiB")


if __name__ == "__main__":
    main()
