"""The keeper between cycles: a grouped step whose StepAllocation was deleted (it is no longer listed)
learns that its allocation ended from what the agent last recorded, instead of waiting for it forever."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from converged_bridge.allocation.keeper import AllocationKeeper
from converged_bridge.allocation.paths import AllocationPaths, build_allocation_paths
from converged_bridge.allocation.steps import AllocationJob
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import BackendRef, Phase, WorkflowStep
from converged_bridge.reconcile.intents import BackendIntent, WriteStatus
from converged_bridge.reconcile.status import StatusTiming
from tests.unit.test_allocation_plans import JOB, STEP_UID, T0, allocation, step


class OneJobBackend:
    """The backend's part, its allocation's job running."""

    def observed(self, alloc: StepAllocation) -> bool:
        return True

    def job_of(self, alloc: StepAllocation) -> AllocationJob | None:
        return JOB

    def submitted_of(self, alloc: StepAllocation) -> BackendRef | None:
        return None

    def build_submit(self, alloc: StepAllocation, paths: AllocationPaths) -> BackendIntent | None:
        return None

    def build_cancel(self, alloc: StepAllocation) -> BackendIntent | None:
        return None

    def build_step_script(self, step: WorkflowStep, alloc: StepAllocation) -> str:
        return "#!/bin/bash\n"

    def runs_warm(self, step: WorkflowStep, alloc: StepAllocation) -> bool:
        return False

    def target_of(self, alloc: StepAllocation) -> str:
        return "hpc/cpu"

    def agent_log(self, alloc: StepAllocation) -> str | None:
        return None


def decided(keeper: AllocationKeeper, s: WorkflowStep) -> tuple[Phase | None, str | None]:
    intents = keeper.decide_step(s, StatusTiming(now=T0 + timedelta(seconds=5))) or []
    (status,) = [i.status for i in intents if isinstance(i, WriteStatus)]
    return status.phase, status.reason


def test_a_step_of_a_deleted_allocation_fails_with_allocation_ended(tmp_path: Path) -> None:
    alloc = allocation(workingDir=str(tmp_path))
    paths = build_allocation_paths(alloc)
    for record in ("claimed", "started"):
        Path(paths.state, record).mkdir(parents=True)
    Path(paths.state, "claimed", STEP_UID).touch()
    Path(paths.state, "started", STEP_UID).write_text(f"{T0.timestamp() + 1}\n")
    Path(paths.spool, "inbox").mkdir(parents=True)
    Path(paths.inbox(STEP_UID)).write_text("#!/bin/bash\n")
    keeper = AllocationKeeper(OneJobBackend())
    keeper.observe([alloc])
    assert decided(keeper, step()) == (Phase.RUNNING, None)
    keeper.observe([])  # deleted: its job is cancelled with it
    assert decided(keeper, step()) == (Phase.FAILED, "AllocationEnded")
    keeper.observe([alloc])  # listed again (a new one of the same name): its own facts count
    assert decided(keeper, step()) == (Phase.RUNNING, None)
