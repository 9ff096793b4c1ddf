"""Which finished runs' WorkflowSteps to delete now (pure).

A run's steps are its record (`kubectl get wfs -l converged.dev/run=...`, `kubectl converged report`),
so they are kept while the run may still change and for a while after: a run is finished when every
one of its steps is in a terminal phase, at the latest `completionTime` among them; its steps go
`ttlSecondsAfterFinished` after that (the smallest any of them asks for, else the controller's default;
like a Job's field of the same name, but per run: a step of a run still going is never deleted, so
the plugin always sees its run's outcome). Kubernetes' own guidance is at most ~10,000 objects of a
kind, and one workflow can make that many.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from converged_bridge.reconcile.status import TERMINAL_PHASES
from converged_bridge.wire import RUN_LABEL

_TERMINAL = {p.value for p in TERMINAL_PHASES}


@dataclass(frozen=True)
class Expired:
    """A finished run whose steps are due for deletion."""

    namespace: str
    run: str | None  # the converged.dev/run label; None: a step of no run, deleted by its name
    finished_at: datetime
    steps: tuple[str, ...]  # names


def plan_retention(
    objects: Iterable[Mapping[str, Any]], now: datetime, default_ttl: timedelta | None
) -> list[Expired]:
    """The finished runs among `objects` (WorkflowStep JSON) whose time to be kept is over at `now`.

    `default_ttl` None keeps runs whose steps name no TTL forever. A step without the run label is a run
    of its own. Steps already being deleted are left out (their deletion is under way).
    """
    runs: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for obj in objects:
        meta = obj.get("metadata") or {}
        run = (meta.get("labels") or {}).get(RUN_LABEL) or f"uid:{meta.get('uid', '')}"
        runs.setdefault((str(meta.get("namespace", "")), run), []).append(obj)
    expired = []
    for (namespace, run), steps in sorted(runs.items()):
        live = [s for s in steps if not s["metadata"].get("deletionTimestamp")]
        if not live:
            continue
        ends = [_finished_at(s) for s in live]
        if any(end is None for end in ends):
            continue  # a step still going (or with no completion time): the run is not over
        ttl = _ttl(live, default_ttl)
        finished = max(e for e in ends if e is not None)
        if ttl is not None and now >= finished + ttl:
            names = tuple(sorted(str(s["metadata"]["name"]) for s in live))
            expired.append(Expired(namespace, None if run.startswith("uid:") else run, finished, names))
    return expired


def _finished_at(obj: Mapping[str, Any]) -> datetime | None:
    status = obj.get("status") or {}
    if status.get("phase") not in _TERMINAL:
        return None
    # an invalid step fails with no completion time: when it was found so, else when it was made
    finished = [
        c.get("lastTransitionTime") for c in status.get("conditions") or [] if c.get("type") == "Finished"
    ]
    for stamp in (status.get("completionTime"), *finished, obj["metadata"].get("creationTimestamp")):
        if stamp:
            try:
                return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
            except ValueError:
                continue
    return None


def _ttl(steps: list[Mapping[str, Any]], default: timedelta | None) -> timedelta | None:
    asked = [
        int(s["spec"]["ttlSecondsAfterFinished"])
        for s in steps
        if isinstance((s.get("spec") or {}).get("ttlSecondsAfterFinished"), int)
    ]
    return timedelta(seconds=min(asked)) if asked else default
