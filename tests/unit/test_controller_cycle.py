"""The controller's poll cycle: which writes go first, which wait, and which watch events are too old.

The Kubernetes API and Slurm are our own edges here (WorkflowSteps and Events, SlurmTransport):
recording fakes stand in for them; the jobs are a real Slurm job record in the states Slurm later reports.
"""

from __future__ import annotations

import copy
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import Backend, Phase, WorkflowStep
from converged_bridge.backends.kueue import KueueBackend
from converged_bridge.backends.kueue.operators import KueueSite
from converged_bridge.backends.slurm import SlurmBackend
from converged_bridge.backends.slurm.plan import SlurmView, plan_slurm_step
from converged_bridge.controller.runner import Controller
from converged_bridge.controller.settings import ControllerSettings
from converged_bridge.kube.steps import WorkflowSteps
from converged_bridge.reconcile.intents import Emit, Intent, WriteStatus
from converged_bridge.reconcile.status import StatusTiming, plan_ends_step
from converged_bridge.slurm.jobs import COMMENT_PREFIX, JobState, SlurmJob
from converged_bridge.slurm.transport import Submission
from converged_bridge.wire import FINALIZER
from tests.unit.clocks import ManualClock
from tests.unit.test_backend_slurm_plan import CLUSTER_SPEC, JOBS

PENDING_JOB = JOBS[16]
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def uid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


class RecordingKube:
    """The part of the Kubernetes API a poll cycle uses (WorkflowSteps, Events), over stored steps;
    records every write in order."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []  # (step name, what was written)
        self._rv = 100
        self._lock = threading.Lock()  # the controller's appliers write from several threads

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self.stored[obj["metadata"]["name"]] = obj
            return copy.deepcopy(obj)

    def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        return "secret"

    def patch_step_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.writes.append((name, f"status {status['phase']}"))
        obj = self.stored[name]
        merged = {k: v for k, v in {**obj.get("status", {}), **status}.items() if v is not None}
        return self.put({**obj, "status": merged})

    def patch_step_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str | None
    ) -> dict[str, Any]:
        self.writes.append((name, "finalizers"))
        obj = self.stored[name]
        return self.put({**obj, "metadata": {**obj["metadata"], "finalizers": finalizers}})

    def emit_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.writes.append((obj["metadata"]["name"], f"event {reason}"))


class ListingTransport:
    """A Slurm cluster that lists `jobs` and numbers the jobs submitted to it from 500."""

    def __init__(self, jobs: list[SlurmJob]) -> None:
        self.jobs = jobs
        self.submitted: list[Submission] = []

    def server_version(self) -> str:
        return "22.05.8"

    def submit(self, submission: Submission) -> int:
        self.submitted.append(submission)
        return 499 + len(self.submitted)

    def list_jobs(self) -> list[SlurmJob]:
        return self.jobs

    def cancel(self, job_id: int, user: str) -> None:
        return None

    def close(self) -> None:
        return None


def step_object(name: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "WorkflowStep",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": uid(name),
            "generation": 1,
            "finalizers": [FINALIZER],
        },
        "spec": {
            "workflow": {"runId": "r", "rule": "map", "jobId": 1},
            "backend": "slurm",
            "slurm": {"cluster": "hpc"},
            "command": ["true"],
        },
        "status": status or {},
    }


def job_of(name: str, job_id: int, state: JobState, reason: str = "") -> SlurmJob:
    """Step `name`'s job, as Slurm lists it in `state`."""
    ended = state == JobState.COMPLETED
    return replace(
        PENDING_JOB,
        job_id=job_id,
        comment=f"{COMMENT_PREFIX}{uid(name)}",
        state=state,
        reason=reason,
        nodes="" if state == JobState.PENDING else "c1",
        start_time=None if state == JobState.PENDING else T0,
        exit_code=0 if ended else None,
        end_time=T0 + timedelta(seconds=5) if ended else None,
    )


def view(job: SlurmJob | None) -> SlurmView:
    spec = SlurmClusterSpec.model_validate(CLUSTER_SPEC)
    return SlurmView(
        cluster_name="hpc",
        cluster=spec,
        job=job,
        submitted_job_id=None,
        log_dir="/l",
        timing=StatusTiming(T0),
    )


def queued(name: str, job_id: int, reason: str) -> dict[str, Any]:
    """The status the controller wrote at T0 for step `name`, its job pending for `reason`."""
    step = WorkflowStep.model_validate(step_object(name))
    intents = plan_slurm_step(step, view(job_of(name, job_id, JobState.PENDING, reason)))
    status = next(i for i in intents if isinstance(i, WriteStatus)).status
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def shared_log_dir(tmp_path: Path) -> str:
    """A default log directory every step user may write (as a site's is): the controller refuses to
    submit a step whose user could not open its log there."""
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    logs.chmod(0o1777)
    return str(logs)


def controller_over(
    steps: list[dict[str, Any]],
    jobs: list[SlurmJob],
    tmp_path: Path,
    cluster_spec: dict[str, Any] = CLUSTER_SPEC,
    kube: RecordingKube | None = None,
) -> tuple[Controller, RecordingKube, ListingTransport, ManualClock]:
    """A controller that has listed `steps` (not started: the test runs its cycle), in a process
    started seconds after boot, with SlurmCluster `hpc` of `cluster_spec`, over `kube` (a new one)."""
    kube, transport, clock = kube or RecordingKube(), ListingTransport(jobs), ManualClock(wall=T0)
    slurm = SlurmBackend(
        lambda: {"hpc": SlurmClusterSpec.model_validate(cluster_spec)},
        kube.read_secret_key,
        log_dir=shared_log_dir(tmp_path),
        transport_factory=lambda name, spec, read: transport,
        clock=clock.wall,
        monotonic_clock=clock.monotonic,
    )
    kueue = KueueBackend(cast(Any, None), KueueSite(), clock=clock.wall)  # no Kueue step in these cycles
    controller = Controller(
        cast(WorkflowSteps, kube),
        kube,
        {Backend.SLURM: slurm, Backend.KUEUE: kueue},
        ControllerSettings(log_dir=shared_log_dir(tmp_path), pending_reason_refresh=30.0),
        clock=clock.wall,
        monotonic_clock=clock.monotonic,
    )
    controller.on_event("SYNC", [kube.put(o) for o in steps])
    return controller, kube, transport, clock


def test_plan_ends_step_only_for_a_terminal_phase_the_step_does_not_show() -> None:
    step = WorkflowStep.model_validate(step_object("a", queued("a", 16, "Resources")))

    def writing(phase: Phase) -> list[Intent]:
        return [WriteStatus(step.status.model_copy(update={"phase": phase})), Emit("Normal", phase.value, "")]

    assert plan_ends_step(step, writing(Phase.SUCCEEDED))
    assert plan_ends_step(step, writing(Phase.FAILED))
    assert not plan_ends_step(step, writing(Phase.RUNNING))
    assert not plan_ends_step(step, [Emit("Normal", "Succeeded", "")])  # an event alone writes no phase
    done = WorkflowStep.model_validate(step_object("a", {**queued("a", 16, "Resources"), "phase": "Failed"}))
    assert not plan_ends_step(done, writing(Phase.FAILED))  # already shown: a rewrite is no news


def test_a_cycle_writes_the_ended_step_first_and_submits_new_work_in_the_same_cycle(tmp_path: Path) -> None:
    steps = [
        step_object("new"),  # not submitted yet
        step_object("waits", queued("waits", 20, "Resources")),
        step_object("starts", queued("starts", 21, "Priority")),
        step_object("ends", queued("ends", 22, "Priority")),
    ]
    jobs = [
        job_of("waits", 20, JobState.PENDING, "Priority"),  # Slurm changed its mind about the reason
        job_of("starts", 21, JobState.RUNNING),
        job_of("ends", 22, JobState.COMPLETED),
    ]
    controller, kube, transport, clock = controller_over(steps, jobs, tmp_path)

    controller.poll_and_reconcile()
    assert len(transport.submitted) == 1  # new work is never left for a later cycle
    assert kube.writes[:2] == [("ends", "status Succeeded"), ("ends", "event Succeeded")]
    # then the other plans, on the appliers: each step's own writes in order
    assert sorted(kube.writes[2:]) == [
        ("new", "status Queued"),  # no Event: a waiting phase's status says it
        ("starts", "event Running"),
        ("starts", "status Running"),
    ]  # "waits": a new pending reason alone waits for the refresh interval
    for name in ("new", "starts"):
        assert next(w for n, w in kube.writes if n == name).startswith("status")

    clock.advance(31)  # the refresh interval has passed for "waits"
    kube.writes.clear()
    controller.poll_and_reconcile()
    assert kube.writes == [("waits", "status Queued")]  # no event: its phase did not change
    assert kube.stored["waits"]["status"]["reason"] == "Priority"
    assert len(transport.submitted) == 1


def test_a_watch_event_older_than_our_own_write_is_not_decided_on(tmp_path: Path) -> None:
    before = step_object("s", queued("s", 20, "Resources"))
    controller, kube, _, _ = controller_over([before], [job_of("s", 20, JobState.RUNNING)], tmp_path)
    on_its_way = copy.deepcopy(kube.stored["s"])  # the watch's copy, not yet taken by the loop

    controller.poll_and_reconcile()
    assert kube.writes == [("s", "status Running"), ("s", "event Running")]
    controller.on_event("MODIFIED", on_its_way)  # arrives after the write answered
    assert kube.writes == [("s", "status Running"), ("s", "event Running")]  # not written, nor told, again
    assert controller.steps[uid("s")]["status"]["phase"] == "Running"

    controller.on_event("MODIFIED", copy.deepcopy(kube.stored["s"]))  # the write's own echo
    assert (
        controller.steps[uid("s")]["metadata"]["resourceVersion"]
        == kube.stored["s"]["metadata"]["resourceVersion"]
    )
    assert len(kube.writes) == 2


def test_a_burst_of_watch_events_is_taken_together_and_its_new_steps_submitted_on_the_appliers(
    tmp_path: Path,
) -> None:
    waiting = [step_object("old", queued("old", 20, "Resources"))]
    controller, kube, transport, _ = controller_over(waiting, [job_of("old", 20, JobState.PENDING)], tmp_path)
    controller.poll_and_reconcile()  # the Slurm cluster is observed: new steps can be decided at once
    threads: list[str] = []
    submit = transport.submit

    def noting_thread(submission: Submission) -> int:
        threads.append(threading.current_thread().name)
        return submit(submission)

    transport.submit = noting_thread  # type: ignore[method-assign]
    burst = [("ADDED", kube.put(step_object(name))) for name in ("a", "b", "c")]

    controller.on_events(burst)

    assert sorted(s.options.comment for s in transport.submitted) == sorted(
        f"{COMMENT_PREFIX}{uid(n)}" for n in ("a", "b", "c")
    )
    assert sorted(kube.writes) == [("a", "status Queued"), ("b", "status Queued"), ("c", "status Queued")]
    assert all(t.startswith("converged-apply") for t in threads)  # not one after the other on the loop


def test_a_woken_backends_cycle_observes_and_decides_only_its_own_steps(tmp_path: Path) -> None:
    steps = [step_object("ends", queued("ends", 22, "Priority"))]
    ended = [job_of("ends", 22, JobState.COMPLETED)]
    controller, kube, transport, _ = controller_over(steps, ended, tmp_path)
    listed: list[int] = []

    def list_jobs() -> list[SlurmJob]:
        listed.append(1)
        return ended

    transport.list_jobs = list_jobs  # type: ignore[method-assign]

    controller.poll_and_reconcile(frozenset({Backend.KUEUE}))  # the Kueue unit's informers saw news
    assert (listed, kube.writes) == ([], [])  # Slurm is not asked, its step not decided

    controller.poll_and_reconcile()
    assert listed == [1] and kube.writes[0] == ("ends", "status Succeeded")


def test_wakeups_queue_one_entry_per_backend_until_the_loop_takes_it() -> None:
    import queue

    from converged_bridge.controller.wakeups import WAKE, Wakeups

    inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
    wakeups = Wakeups(inbox)
    wake = wakeups.waker(Backend.KUEUE)
    for _ in range(5):  # a burst of pod changes
        wake()
    assert inbox.qsize() == 1 and inbox.get_nowait() == (WAKE, Backend.KUEUE)
    wake()
    assert inbox.qsize() == 0  # not taken yet: the one queued entry stands for it
    wakeups.taken(Backend.KUEUE)
    wake()
    assert inbox.get_nowait() == (WAKE, Backend.KUEUE)
