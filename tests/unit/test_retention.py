"""Retention of finished runs (reconcile.retention): which runs' steps go, and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from converged_bridge.reconcile.retention import Expired, plan_retention

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def step(
    name: str,
    run: str | None = "run-a",
    phase: str | None = "Succeeded",
    ended: datetime | None = T0,
    ttl: int | None = None,
    namespace: str = "alice",
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "creationTimestamp": (T0 - timedelta(hours=1)).isoformat(),
        "labels": {"converged.dev/run": run} if run else {},
    }
    if deleting:
        meta["deletionTimestamp"] = T0.isoformat()
    status: dict[str, Any] = {"phase": phase} if phase else {}
    if ended is not None and phase:
        status["completionTime"] = ended.isoformat().replace("+00:00", "Z")
    spec: dict[str, Any] = {} if ttl is None else {"ttlSecondsAfterFinished": ttl}
    return {"metadata": meta, "spec": spec, "status": status}


def test_a_finished_run_goes_once_its_last_step_is_older_than_the_ttl() -> None:
    steps = [step("a-1", ended=T0 - timedelta(hours=2)), step("a-2", phase="Failed", ended=T0)]
    assert plan_retention(steps, T0 + DAY - timedelta(seconds=1), DAY) == []
    assert plan_retention(steps, T0 + DAY, DAY) == [Expired("alice", "run-a", T0, ("a-1", "a-2"))]


def test_a_run_with_a_step_still_going_is_kept_whatever_the_age_of_the_others() -> None:
    steps = [step("a-1", ended=T0 - 30 * DAY), step("a-2", phase="Running", ended=None)]
    assert plan_retention(steps, T0 + 365 * DAY, DAY) == []
    steps = [step("a-1", ended=T0 - 30 * DAY), step("a-2", phase=None, ended=None)]  # not yet seen
    assert plan_retention(steps, T0 + 365 * DAY, DAY) == []


def test_the_smallest_ttl_a_step_of_the_run_asks_for_wins_over_the_default() -> None:
    steps = [step("a-1", ttl=3600), step("a-2", ttl=7200)]
    assert [e.run for e in plan_retention(steps, T0 + timedelta(hours=1), 30 * DAY)] == ["run-a"]
    assert plan_retention(steps, T0 + timedelta(minutes=59), None) == []


def test_no_default_keeps_runs_that_name_no_ttl_forever() -> None:
    assert plan_retention([step("a-1")], T0 + 3650 * DAY, None) == []


def test_runs_are_told_apart_by_namespace_and_label() -> None:
    steps = [
        step("a-1"),
        step("b-1", namespace="bob"),
        step("c-1", run="run-c", ended=T0 + DAY),
    ]
    expired = plan_retention(steps, T0 + DAY, DAY)
    assert [(e.namespace, e.run, e.steps) for e in expired] == [
        ("alice", "run-a", ("a-1",)),
        ("bob", "run-a", ("b-1",)),
    ]


def test_a_step_of_no_run_is_its_own_run_deleted_by_name() -> None:
    expired = plan_retention([step("lone", run=None)], T0 + DAY, DAY)
    assert expired == [Expired("alice", None, T0, ("lone",))]


def test_steps_being_deleted_are_left_to_their_deletion() -> None:
    steps = [step("a-1", deleting=True), step("a-2")]
    assert [e.steps for e in plan_retention(steps, T0 + DAY, DAY)] == [("a-2",)]
    assert plan_retention([step("a-1", deleting=True)], T0 + DAY, DAY) == []


def test_an_invalid_step_with_no_completion_time_counts_from_when_it_was_found_invalid() -> None:
    invalid = step("bad", phase="Failed", ended=None)
    invalid["status"]["conditions"] = [
        {"type": "Finished", "status": "True", "lastTransitionTime": (T0 - DAY).isoformat()}
    ]
    assert [e.finished_at for e in plan_retention([invalid], T0, DAY)] == [T0 - DAY]
