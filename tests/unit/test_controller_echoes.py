"""Watch events from before the controller's own write are skipped, with resourceVersions opaque:
compared for equality only (Kubernetes promises no order between them)."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

from converged_bridge.controller.echoes import AwaitedEchoes
from converged_bridge.slurm.jobs import JobState
from tests.unit.test_controller_cycle import RecordingKube, controller_over, job_of, queued, step_object, uid


class CountingDown(RecordingKube):
    """An API server whose versions go down as they are written: opaque strings, newer ones read lower."""

    def __init__(self) -> None:
        super().__init__()
        self._next = 9000
        self._lock = threading.Lock()

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._next -= 7
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self._next)
            self.stored[obj["metadata"]["name"]] = obj
            return copy.deepcopy(obj)


def versioned(rv: str) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": rv}}


def test_events_are_stale_until_the_echo_of_our_write_then_every_version_is_new() -> None:
    echoes = AwaitedEchoes()
    echoes.wrote("u", "q1", versioned("zz9"))
    assert echoes.is_stale("u", versioned("q1"))  # the watch's copy from before the write
    assert echoes.is_stale("u", versioned("a0"))  # someone's version between: our answer holds it already
    assert not echoes.is_stale("u", versioned("zz9"))  # the echo
    assert not echoes.is_stale("u", versioned("0"))  # after the echo: new, whatever it reads like
    assert not echoes.is_stale("other", versioned("q1"))  # nothing awaited for another object


def test_a_write_that_changed_nothing_awaits_no_echo() -> None:
    echoes = AwaitedEchoes()
    echoes.wrote("u", "17", versioned("17"))  # the server kept the version: no event will come
    assert not echoes.is_stale("u", versioned("18"))


def test_a_relist_or_a_deletion_ends_the_wait() -> None:
    echoes = AwaitedEchoes()
    echoes.wrote("u", "1", versioned("2"))
    echoes.forget("u")
    assert not echoes.is_stale("u", versioned("1"))
    echoes.wrote("u", "1", versioned("2"))
    echoes.clear()
    assert not echoes.is_stale("u", versioned("1"))


def test_a_newer_version_that_reads_lower_is_decided_on(tmp_path: Path) -> None:
    before = step_object("s", queued("s", 20, "Resources"))
    controller, kube, _, _ = controller_over(
        [before], [job_of("s", 20, JobState.RUNNING)], tmp_path, kube=CountingDown()
    )
    on_its_way = copy.deepcopy(kube.stored["s"])  # the watch's copy, not yet taken by the loop

    controller.poll_and_reconcile()
    assert kube.writes == [("s", "status Running"), ("s", "event Running")]
    controller.on_event("MODIFIED", on_its_way)  # from before our write: skipped
    assert controller.steps[uid("s")]["status"]["phase"] == "Running"
    assert len(kube.writes) == 2
    controller.on_event("MODIFIED", copy.deepcopy(kube.stored["s"]))  # the echo

    # a user labels the step: a newer version, whose number reads lower than ours
    labelled = kube.put(
        {**kube.stored["s"], "metadata": {**kube.stored["s"]["metadata"], "labels": {"seen": "yes"}}}
    )
    controller.on_event("MODIFIED", labelled)
    held = controller.steps[uid("s")]
    assert held["metadata"]["labels"] == {"seen": "yes"}
    assert held["metadata"]["resourceVersion"] == labelled["metadata"]["resourceVersion"]
    assert len(kube.writes) == 2  # nothing new to write for a label
