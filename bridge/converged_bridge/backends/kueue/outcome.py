"""What a Kueue-managed object, its Workload and its pods mean for the WorkflowStep (pure).

Phases: Queued (no quota yet, Kueue's words as the reason; or admitted to a flavor and waiting for
pods), Running, Succeeded / Failed (the container's exit code and the tail of its output from the
termination message), Queued again after an eviction or preemption, with Kueue's reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from converged_bridge.api.workflowstep import Phase


@dataclass(frozen=True)
class KueueOutcome:
    phase: Phase
    reason: str | None
    message: str
    exit_code: int | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    log_tail: str | None = None
    flavors: tuple[str, ...] = ()


def _condition(obj: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    if not obj:
        return None
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return None


def _true(obj: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    c = _condition(obj, type_)
    return c if c and c.get("status") == "True" else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def admitted_flavors(workload: Mapping[str, Any] | None) -> tuple[str, ...]:
    admission = ((workload or {}).get("status") or {}).get("admission") or {}
    flavors: list[str] = []
    for assignment in admission.get("podSetAssignments") or []:
        for flavor in (assignment.get("flavors") or {}).values():
            if flavor not in flavors:
                flavors.append(flavor)
    return tuple(flavors)


HELPER_CONTAINERS = frozenset({"worker"})  # MPI workers serve the launcher's ranks; they do not run the step


def terminated_container(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The terminated state of the step's container: a failed one first, else any (never an MPI
    worker's: workers are stopped once the launcher is done)."""
    states = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") in HELPER_CONTAINERS:
                continue
            terminated = (cs.get("state") or {}).get("terminated")
            if terminated:
                states.append(terminated)
    failed = [t for t in states if t.get("exitCode", 0) != 0]
    chosen: list[Mapping[str, Any]] = failed or states
    return chosen[0] if chosen else None


# A container waiting for one of these will not start by waiting longer: the kubelet tried and backs off
# (ErrImagePull alone is the first try, which a registry's hiccup may cause)
IMAGE_PULL_FAILURES = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})


def image_pull_failure(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) when a container of the step's pods cannot get its image, else None."""
    for pod in pods:
        status = pod.get("status") or {}
        for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in IMAGE_PULL_FAILURES:
                image = cs.get("image") or "its image"
                detail = str(waiting.get("message") or "").strip()
                message = f"container {cs.get('name')} cannot pull {image}: {detail or reason}"
                return str(reason), message[:1024]
    return None


def _running(pods: Sequence[Mapping[str, Any]]) -> bool:
    return any((p.get("status") or {}).get("phase") == "Running" for p in pods)


def map_kueue_status(
    kind: str,
    obj: Mapping[str, Any] | None,
    workload: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
) -> KueueOutcome:
    """The step's state from its `kind` object, the object's Workload and the step's pods."""
    where = f"{kind}/{(obj or {}).get('metadata', {}).get('name', '?')}"
    flavors = admitted_flavors(workload)
    admitted = _true(workload, "Admitted")
    start = _time(admitted.get("lastTransitionTime")) if admitted else None
    terminated = terminated_container(pods)
    exit_code = terminated.get("exitCode") if terminated else None
    tail = (terminated.get("message") or None) if terminated else None

    finished = _true(workload, "Finished")
    job_done = _true(obj, "Complete") or _true(obj, "Completed")
    job_failed = _true(obj, "Failed")
    if finished or job_done or job_failed:
        cond = finished or job_failed or job_done or {}
        # Kueue's Finished condition says Succeeded or Failed; without it, the object's own conditions
        ok = finished.get("reason") == "Succeeded" if finished else not job_failed
        end = _time(cond.get("lastTransitionTime"))
        if ok:
            return KueueOutcome(
                Phase.SUCCEEDED,
                None,
                f"{where} completed",
                exit_code if exit_code is not None else 0,
                start,
                end,
                None,
                flavors,
            )
        reason = str((job_failed or cond).get("reason") or "Failed")
        detail = str((job_failed or cond).get("message") or "")
        code = f" with exit code {exit_code}" if exit_code is not None else ""
        return KueueOutcome(
            Phase.FAILED,
            reason,
            f"{where} failed{code}: {detail}".rstrip(": "),
            exit_code,
            start,
            end,
            tail,
            flavors,
        )

    evicted = _true(workload, "Evicted")
    if evicted and not admitted:
        reason = str(evicted.get("reason") or "Evicted")
        return KueueOutcome(
            Phase.QUEUED,
            reason,
            f"{where} was evicted: {evicted.get('message', '')}".rstrip(": "),
            flavors=flavors,
        )
    if admitted:
        if _running(pods):
            return KueueOutcome(
                Phase.RUNNING,
                None,
                f"{where} is running (flavor {', '.join(flavors)})",
                start_time=start,
                flavors=flavors,
            )
        return KueueOutcome(
            Phase.QUEUED,
            "Admitted",
            f"{where} admitted to flavor {', '.join(flavors)}; waiting for its pods",
            start_time=start,
            flavors=flavors,
        )
    reserved = _condition(workload, "QuotaReserved")
    if reserved and reserved.get("status") == "False":
        # Kueue's own words, e.g. "couldn't assign flavors to pod set main: insufficient quota for cpu ..."
        message = str(reserved.get("message") or reserved.get("reason") or "waiting for quota")
        return KueueOutcome(Phase.QUEUED, message[:256], f"{where} is queued by Kueue: {message}")
    if workload is None:
        return KueueOutcome(
            Phase.QUEUED, "WaitingForKueue", f"{where} was created; Kueue has no Workload for it yet"
        )
    return KueueOutcome(Phase.QUEUED, "Pending", f"{where} is waiting in its queue")
