"""A run's WorkflowSteps read back as records, and its figures: estimate (the plan's annotations) beside
measure (the status' times), as the plugin prints them when the run ends."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from converged_bridge.report.record import map_run_records, run_start
from converged_bridge.report.summary import build_run_summary, render_run_summary
from converged_bridge.report.text import format_duration
from converged_bridge.schedule import StepEstimate, Usage
from snakemake_executor_plugin_converged import Executor
from snakemake_executor_plugin_converged.learning import RunHistory
from snakemake_executor_plugin_converged.session import RunSession
from tests.unit.runs import T0, seed_run
from tests.unit.test_plugin_status_cycle import Recorder


def test_records_carry_target_times_and_the_plan() -> None:
    records, invalid = map_run_records([*seed_run(g2="5,6"), {"metadata": {"name": "broken"}, "spec": {}}])
    assert invalid == ["broken"]
    assert [r.job_id for r in records] == list(range(1, 10))
    analysis = records[5]
    assert (analysis.name, analysis.label, analysis.backend, analysis.target) == (
        "sm-seed-analysis-6",
        "analysis (2)",
        "slurm",
        "s/gpu",
    )
    assert analysis.created == T0 + timedelta(seconds=51)
    assert analysis.submitted == T0 + timedelta(seconds=52)
    assert (analysis.started, analysis.ended) == (T0 + timedelta(seconds=75), T0 + timedelta(seconds=95))
    assert (analysis.phase, analysis.group, analysis.plan.group, analysis.plan.upstream) == (
        "Succeeded",
        "g2",
        "g2",
        (4,),
    )
    assert analysis.plan.estimate == StepEstimate(6, 124, 188, 248)
    assert records[8].target == "team-a/real" and records[8].plan.upstream == (7, 8)
    assert records[0].group is None and run_start(records) == T0


def test_summary_estimate_beside_measure() -> None:
    records, _ = map_run_records(seed_run())
    summary = build_run_summary(records)
    assert (summary.steps, summary.estimated_steps, summary.measured_steps) == (9, 9, 9)
    assert summary.estimated_makespan == 373 and summary.measured_makespan == 135
    assert summary.estimated[("slurm", "s/gpu")] == Usage(2 / 60, 2 * 100 / 1024 / 60, 2 / 60)
    assert summary.measured[("slurm", "s/gpu")].gpu_hours == pytest.approx(40 / 3600)
    assert summary.measured[("kueue", "team-a/real")].cpu_hours == pytest.approx(5 / 3600)
    lines = render_run_summary(summary, "sm-seed").splitlines()
    assert lines[0] == "converged run sm-seed: 9 steps, 9 ran, 9 estimated by the plan"
    assert lines[1] == "makespan: estimated 6m13s, measured 2m15s"
    header = lines[2].split()
    assert header[:2] == ["BACKEND", "TARGET"] and header[2:6] == ["CPU-h", "est", "CPU-h", "measured"]
    assert lines[5].split() == ["slurm", "s/gpu", "0.033", "0.011", "0.003", "0.001", "0.033", "0.011"]
    assert lines[-1].split()[0] == "total"


def test_a_run_that_stopped_early_measures_what_ran() -> None:
    run = seed_run()
    for obj in run[4:]:  # the analyses never started; nothing after them was created
        obj["status"] = {"phase": "Queued"}
    records, _ = map_run_records(run[:6])
    summary = build_run_summary(records)
    assert (summary.steps, summary.estimated_steps, summary.measured_steps) == (6, 6, 4)
    assert summary.measured_makespan == 49 and summary.estimated_makespan == 248
    assert ("slurm", "s/gpu") not in summary.measured


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "-"), (0.4, "0s"), (59.6, "1m00s"), (125, "2m05s"), (7322, "2h02m")]
)
def test_durations(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


class RunSteps:
    """Our own edge (kube/steps.WorkflowSteps): the run's steps from a list, LISTs counted."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.lists = 0

    def list_run_steps(self, namespace: str, run_id: str) -> list[dict[str, Any]]:
        self.lists += 1
        return self.objects


def test_the_executor_prints_the_summary_when_the_run_ends(tmp_path: Path) -> None:
    steps = RunSteps(seed_run())
    executor = Executor.__new__(Executor)
    executor.history = RunHistory(str(tmp_path), [])
    executor.session = RunSession(steps, namespace="team-a", run_id="sm-seed")  # type: ignore[arg-type]
    executor.run_id, executor.namespace = "sm-seed", "team-a"
    executor.logger = Recorder()
    executor._summarize()
    stored, text = executor.logger.lines
    assert stored.startswith("converged: 0 steps added to the history ")  # the seed's steps carry no notes
    assert steps.lists == 1
    assert text.startswith("converged run sm-seed: 9 steps, 9 ran, 9 estimated by the plan\n")
    assert "makespan: estimated 6m13s, measured 2m15s" in text
    assert text.endswith("the run's report: kubectl converged report sm-seed -n team-a > run.html")
