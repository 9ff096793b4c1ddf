"""A status cycle of the executor: one LIST for every active step of the run, whatever their number."""

from __future__ import annotations

import asyncio
from typing import Any

from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from throttler import Throttler

from converged_bridge.routing import SiteWeights
from snakemake_executor_plugin_converged import Executor
from snakemake_executor_plugin_converged.learning import RunHistory
from snakemake_executor_plugin_converged.placements import Placements
from snakemake_executor_plugin_converged.session import RunSession
from tests.unit.clocks import ManualClock


class CountingSteps:
    """Our own edge (kube/steps.WorkflowSteps) replaced: answers LISTs from a dict, counts them."""

    def __init__(self, phases: dict[str, str]) -> None:
        self.phases = phases
        self.lists = 0
        self.deleted: list[str] = []

    def delete_unfinished_steps(self, namespace: str, run_id: str) -> list[str]:
        """What the API server does with the field selector on status.phase, and then the controller."""
        self.deleted = [
            n for n, phase in self.phases.items() if phase not in ("Succeeded", "Failed", "Cancelled")
        ]
        for name in self.deleted:
            del self.phases[name]
        return self.deleted

    def list_run_steps(self, namespace: str, run_id: str) -> list[dict[str, Any]]:
        self.lists += 1
        return [
            {"metadata": {"name": name}, "status": {"phase": phase, "backendRef": {"display": f"c/{i}"}}}
            for i, (name, phase) in enumerate(self.phases.items(), start=1)
        ]


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, msg: str) -> None:
        self.lines.append(msg)

    def info(self, msg: str) -> None:
        self.lines.append(msg)


def test_one_list_per_cycle_for_1000_active_steps() -> None:
    phases = {f"sm-1-r-{i}": "Running" for i in range(1000)}
    phases["sm-1-r-0"] = "Succeeded"
    phases["sm-1-r-1"] = "Failed"
    del phases["sm-1-r-2"]  # deleted behind snakemake's back
    steps = CountingSteps(phases)
    executor = Executor.__new__(Executor)
    executor._cancelling = False
    executor.placements = Placements(SiteWeights(), settle_seconds=20)
    executor.history = RunHistory("/nowhere", [])  # not right-sized: a failure is the step's
    executor.session = RunSession(steps, namespace="team-a", run_id="sm-1", clock=ManualClock().monotonic)  # type: ignore[arg-type]
    executor.status_rate_limiter = Throttler(rate_limit=10, period=1)
    executor.logger = Recorder()
    succeeded: list[str] = []
    failed: list[tuple[str, str]] = []
    executor.report_job_success = lambda info: succeeded.append(info.external_jobid)
    executor.report_job_error = lambda info, msg=None, **kw: failed.append((info.external_jobid, msg))
    active = [SubmittedJobInfo(job=None, external_jobid=f"sm-1-r-{i}") for i in range(1000)]

    async def cycle() -> list[SubmittedJobInfo]:
        return [j async for j in executor.check_active_jobs(active)]

    still = asyncio.run(cycle())
    assert steps.lists == 1
    assert succeeded == ["sm-1-r-0"]
    assert executor.logger.lines == ["converged: WorkflowStep sm-1-r-0 succeeded, backend job c/1"]
    assert [name for name, _ in failed] == ["sm-1-r-1", "sm-1-r-2"]
    assert "backend job c/2" in failed[0][1] and "was deleted before it finished" in failed[1][1]
    assert len(still) == 997

    # after Ctrl-C the run's steps are deleted on purpose: the cycle reads nothing and reports no failure
    executor._cancelling = True
    assert len(asyncio.run(cycle())) == 1000
    assert steps.lists == 1 and [name for name, _ in failed] == ["sm-1-r-1", "sm-1-r-2"]


def test_cancel_deletes_the_unfinished_steps_and_keeps_the_record_of_the_finished() -> None:
    steps = CountingSteps(
        {"sm-1-a-1": "Succeeded", "sm-1-b-2": "Running", "sm-1-c-3": "Queued", "sm-1-d-4": "Failed"}
    )
    session = RunSession(steps, namespace="team-a", run_id="sm-1", clock=ManualClock().monotonic)  # type: ignore[arg-type]
    assert session.cancel(timeout=5) == []
    assert steps.deleted == ["sm-1-b-2", "sm-1-c-3"]
    assert sorted(steps.phases) == ["sm-1-a-1", "sm-1-d-4"]
