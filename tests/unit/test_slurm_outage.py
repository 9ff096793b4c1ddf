"""A Slurm cluster that stops answering: its steps say so and wait, every other cluster goes on.

The Kubernetes API and each cluster's SlurmTransport are our own edges (recording fakes from
test_controller_cycle); the jobs are the real captured Slurm job record in the states Slurm reports.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import Backend
from converged_bridge.backends.kueue import KueueBackend
from converged_bridge.backends.kueue.operators import KueueSite
from converged_bridge.backends.slurm import SlurmBackend
from converged_bridge.backends.slurm.unit import BACKOFF_FIRST, BACKOFF_MAX
from converged_bridge.controller.runner import Controller
from converged_bridge.controller.settings import ControllerSettings
from converged_bridge.errors import TransientBackendError
from converged_bridge.kube.steps import WorkflowSteps
from converged_bridge.slurm.jobs import JobState, SlurmJob
from converged_bridge.slurm.transport import Submission
from converged_bridge.wire import FINALIZER
from tests.unit.clocks import ManualClock
from tests.unit.test_backend_slurm_plan import CLUSTER_SPEC
from tests.unit.test_controller_cycle import (
    T0,
    ListingTransport,
    RecordingKube,
    job_of,
    queued,
    shared_log_dir,
    step_object,
)

REFUSED = "slurmrestd GET /slurm/v0.0.45/jobs: ConnectError: [Errno 111] Connection refused"


class FlakyTransport(ListingTransport):
    """A cluster whose slurmctld can be stopped: while `down`, listing and submitting fail as
    slurmrestd fails them (a transient error)."""

    def __init__(self, jobs: list[SlurmJob]) -> None:
        super().__init__(jobs)
        self.down = False
        self.listings = 0

    def list_jobs(self) -> list[SlurmJob]:
        self.listings += 1
        if self.down:
            raise TransientBackendError(REFUSED)
        return self.jobs

    def submit(self, submission: Submission) -> int:
        if self.down:
            raise TransientBackendError(REFUSED)
        return super().submit(submission)


def on(cluster: str, obj: dict[str, Any]) -> dict[str, Any]:
    obj["spec"]["slurm"]["cluster"] = cluster
    return obj


def two_clusters(
    steps: list[dict[str, Any]], transports: dict[str, ListingTransport], tmp_path: Path
) -> tuple[Controller, RecordingKube, ManualClock]:
    kube, clock = RecordingKube(), ManualClock(wall=T0)
    spec = SlurmClusterSpec.model_validate(CLUSTER_SPEC)
    slurm = SlurmBackend(
        lambda: dict.fromkeys(transports, spec),
        kube.read_secret_key,
        log_dir=shared_log_dir(tmp_path),
        transport_factory=lambda name, spec, read: transports[name],
        clock=clock.wall,
        monotonic_clock=clock.monotonic,
    )
    kueue = KueueBackend(cast(Any, None), KueueSite(), clock=clock.wall)
    controller = Controller(
        cast(WorkflowSteps, kube),
        kube,
        {Backend.SLURM: slurm, Backend.KUEUE: kueue},
        ControllerSettings(log_dir=shared_log_dir(tmp_path), pending_reason_refresh=30.0),
        clock=clock.wall,
        monotonic_clock=clock.monotonic,
    )
    controller.on_event("SYNC", [kube.put(o) for o in steps])
    return controller, kube, clock


def status(kube: RecordingKube, name: str) -> dict[str, Any]:
    return cast(dict[str, Any], kube.stored[name]["status"])


def test_steps_on_an_unreachable_cluster_wait_and_say_why_while_the_other_cluster_goes_on(
    tmp_path: Path,
) -> None:
    up, down = ListingTransport([]), FlakyTransport([job_of("runs", 30, JobState.RUNNING)])
    down.down = True
    steps = [
        on("up", step_object("fresh-up")),
        on("down", step_object("fresh-down")),
        on("down", step_object("runs", {**queued("runs", 30, "Resources"), "phase": "Running"})),
    ]
    controller, kube, _ = two_clusters(steps, {"up": up, "down": down}, tmp_path)

    controller.poll_and_reconcile()
    assert len(up.submitted) == 1
    assert status(kube, "fresh-up")["phase"] == "Queued"
    assert down.submitted == []
    waiting = status(kube, "fresh-down")
    assert (waiting["phase"], waiting["reason"]) == ("Pending", "ClusterUnreachable")
    assert waiting["message"].startswith("Slurm cluster down unreachable since 06:00:00 UTC (slurmrestd GET")
    assert waiting["message"].endswith("; it is submitted when it answers")
    running = status(kube, "runs")
    # its job may well still run: the phase and the job it names are kept
    assert (running["phase"], running["reason"]) == ("Running", "ClusterUnreachable")
    assert running["backendRef"]["jobId"] == 30
    assert "its job's state is unknown until it answers" in running["message"]


def test_an_unreachable_cluster_is_asked_again_after_a_backoff_that_doubles_and_resets(
    tmp_path: Path,
) -> None:
    down = FlakyTransport([])
    down.down = True
    controller, kube, clock = two_clusters([on("down", step_object("s"))], {"down": down}, tmp_path)

    controller.poll_and_reconcile()
    assert down.listings == 1
    gaps = []
    for _ in range(8):
        before, waited = down.listings, 0.0
        while down.listings == before:
            clock.advance(5)
            waited += 5
            controller.poll_and_reconcile()
        gaps.append(waited)
    assert gaps[0] == BACKOFF_FIRST
    assert gaps[1:4] == [2 * BACKOFF_FIRST, 4 * BACKOFF_FIRST, 8 * BACKOFF_FIRST]
    assert max(gaps) == BACKOFF_MAX and gaps[-1] == BACKOFF_MAX
    assert down.submitted == [] and status(kube, "s")["reason"] == "ClusterUnreachable"

    down.down = False  # slurmctld is back: the next look finds it, the step is submitted at once
    clock.advance(BACKOFF_MAX)
    controller.poll_and_reconcile()
    assert len(down.submitted) == 1
    assert (status(kube, "s")["phase"], status(kube, "s")["reason"]) == ("Queued", "Submitted")
    down.down = True  # a new outage starts over from the first backoff
    before = down.listings
    clock.advance(1)
    controller.poll_and_reconcile()
    clock.advance(BACKOFF_FIRST)
    controller.poll_and_reconcile()
    assert down.listings == before + 2


def test_a_submit_that_fails_as_unreachable_is_not_repeated_until_a_listing_shows_no_job(
    tmp_path: Path,
) -> None:
    """slurmctld may have taken the job before the connection broke: exactly once holds."""
    flaky = FlakyTransport([])
    controller, kube, clock = two_clusters([on("hpc", step_object("s"))], {"hpc": flaky}, tmp_path)
    flaky.down = True
    flaky.listings = 0

    def list_then_fail() -> list[SlurmJob]:  # the listing answers, then slurmctld goes away
        flaky.listings += 1
        return []

    flaky.list_jobs = list_then_fail  # type: ignore[method-assign]
    controller.poll_and_reconcile()
    assert flaky.submitted == [] and status(kube, "s")["reason"] == "ClusterUnreachable"

    # it had been taken after all: the next listing shows the job, which is adopted, not submitted again
    taken = job_of("s", 77, JobState.PENDING, "Priority")
    del flaky.list_jobs
    flaky.jobs, flaky.down = [taken], False
    clock.advance(BACKOFF_FIRST)
    controller.poll_and_reconcile()
    assert flaky.submitted == []
    assert (status(kube, "s")["phase"], status(kube, "s")["backendRef"]["jobId"]) == ("Queued", 77)


def test_a_step_deleted_while_its_cluster_is_unreachable_keeps_its_finalizer_until_it_answers(
    tmp_path: Path,
) -> None:
    down = FlakyTransport([job_of("runs", 30, JobState.RUNNING)])
    obj = on("down", step_object("runs", {**queued("runs", 30, "Resources"), "phase": "Running"}))
    obj["metadata"]["deletionTimestamp"] = "2026-11-22T06:00:01Z"
    down.down = True
    controller, kube, clock = two_clusters([obj], {"down": down}, tmp_path)

    controller.poll_and_reconcile()
    assert kube.stored["runs"]["metadata"]["finalizers"] == [FINALIZER]  # its job is not known cancelled

    down.down = False
    clock.advance(BACKOFF_FIRST)
    controller.poll_and_reconcile()
    assert kube.stored["runs"]["metadata"]["finalizers"] == []


def test_clusters_are_listed_side_by_side() -> None:
    """A cluster whose slurmrestd waits out MessageTimeout for a stopped slurmctld delays no other: the
    slow listing here returns only once the other listing has been made."""
    other_listed = threading.Event()

    class Slow(ListingTransport):
        def list_jobs(self) -> list[SlurmJob]:
            if not other_listed.wait(timeout=10):
                raise TransientBackendError("listed one after the other")
            return []

    class Quick(ListingTransport):
        def list_jobs(self) -> list[SlurmJob]:
            other_listed.set()
            return []

    transports: dict[str, ListingTransport] = {"a-slow": Slow([]), "b-quick": Quick([])}
    spec = SlurmClusterSpec.model_validate(CLUSTER_SPEC)
    clock = ManualClock(wall=T0)
    slurm = SlurmBackend(
        lambda: dict.fromkeys(transports, spec),
        lambda ns, name, key: "secret",
        log_dir="/unused",
        transport_factory=lambda name, spec, read: transports[name],
        clock=clock.wall,
        monotonic_clock=clock.monotonic,
    )
    from converged_bridge.api.workflowstep import WorkflowStep

    steps = [WorkflowStep.model_validate(on(n, step_object(n))) for n in transports]
    slurm.observe(steps)
    assert slurm.outages == {} and slurm.queries == 2
    slurm.close()
