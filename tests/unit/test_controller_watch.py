"""The controller's watcher: LIST, then WATCH from the list's resourceVersion; a watch the server ends
is resumed from the last version seen (BOOKMARKs included); an ERROR event (410 Gone: the version is
too old) or a failed request means LIST again, after a backoff when a request failed.

WorkflowSteps' LIST and WATCH are our edge: a scripted fake answers them, with the events as
kube-apiserver sends them (a watch ERROR's object is a metav1.Status). Versions are opaque strings:
the watcher passes them on as they are.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, cast

from converged_bridge.controller.settings import ControllerSettings
from converged_bridge.controller.watch import watch_steps
from converged_bridge.errors import PermanentBackendError, TransientBackendError
from converged_bridge.kube.steps import WorkflowSteps

# kube-apiserver's answer on a watch whose resourceVersion etcd has compacted away
GONE = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "too old resource version: rv-a (rv-q)",
    "reason": "Expired",
    "code": 410,
}
SETTINGS = ControllerSettings(
    namespace="team-a", label_selector="!converged.dev/controller", watch_timeout=60
)


def step(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "team-a", "uid": f"uid-{name}", "resourceVersion": rv}}


def bookmark(rv: str) -> dict[str, Any]:
    return {
        "kind": "WorkflowStep",
        "apiVersion": "converged.dev/v1alpha1",
        "metadata": {"resourceVersion": rv},
    }


class Stop(threading.Event):
    """The watcher's stop flag; its backoff waits are recorded and return at once."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(cast(float, timeout))
        return self.is_set()


Answer = tuple[list[dict[str, Any]], str] | list[tuple[str, dict[str, Any]]] | Exception


class ScriptedSteps:
    """WorkflowSteps' LIST and WATCH, answered in order from `script`; every call recorded. When the
    script is spent, the watcher is stopped."""

    def __init__(self, script: list[Answer], stop: Stop) -> None:
        self.script = list(script)
        self.stop = stop
        self.calls: list[tuple[str, ...]] = []

    def _next(self) -> Answer:
        if not self.script:
            self.stop.set()
            return []
        return self.script.pop(0)

    def list_steps(self, namespace: str | None = None, label_selector: str = "") -> tuple[list[Any], str]:
        self.calls.append(("list", namespace or "", label_selector))
        answer = self._next()
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, list):  # spent: an empty list
            return [], ""
        return answer

    def watch_steps(
        self,
        resource_version: str,
        namespace: str | None = None,
        timeout_seconds: int = 300,
        label_selector: str = "",
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        self.calls.append(("watch", resource_version, str(timeout_seconds)))
        answer = self._next()
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, list), "the script answers a WATCH with events"
        yield from answer


def run(script: list[Answer]) -> tuple[ScriptedSteps, list[tuple[str, Any]], Stop]:
    stop = Stop()
    api = ScriptedSteps(script, stop)
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    watch_steps(cast(WorkflowSteps, api), SETTINGS, events, stop)
    return api, [events.get_nowait() for _ in range(events.qsize())], stop


def kinds(events: list[tuple[str, Any]]) -> list[str]:
    return [k if k == "SYNC" else f"{k} {obj['metadata']['name']}" for k, obj in events]


def test_a_watch_ended_by_the_server_resumes_from_the_last_version_seen_bookmarks_included() -> None:
    api, events, stop = run(
        [
            ([step("a", "rv-a")], "rv-list"),
            [("ADDED", step("b", "rv-b")), ("MODIFIED", step("a", "rv-c")), ("BOOKMARK", bookmark("rv-d"))],
            [("DELETED", step("b", "rv-e"))],
        ]
    )
    assert api.calls == [
        ("list", "team-a", "!converged.dev/controller"),
        ("watch", "rv-list", "60"),
        ("watch", "rv-d", "60"),  # resumed after the bookmark: no LIST again
        ("watch", "rv-e", "60"),
    ]
    assert kinds(events) == ["SYNC", "ADDED b", "MODIFIED a", "DELETED b"]  # no BOOKMARK passed on
    assert events[0][1] == [step("a", "rv-a")]
    assert stop.waits == []


def test_a_410_gone_error_event_lists_again_and_watches_from_the_new_list() -> None:
    api, events, stop = run(
        [
            ([step("a", "rv-a")], "rv-list"),
            [("MODIFIED", step("a", "rv-b")), ("ERROR", GONE), ("MODIFIED", step("a", "never"))],
            ([step("a", "rv-q"), step("c", "rv-r")], "rv-relist"),
            [("ADDED", step("d", "rv-s"))],
        ]
    )
    assert [c[:2] for c in api.calls] == [
        ("list", "team-a"),
        ("watch", "rv-list"),
        ("list", "team-a"),  # relisted at once: an expired version is no failure to back off from
        ("watch", "rv-relist"),
        ("watch", "rv-s"),
    ]
    assert kinds(events) == ["SYNC", "MODIFIED a", "SYNC", "ADDED d"]  # nothing after the ERROR
    assert events[2][1] == [step("a", "rv-q"), step("c", "rv-r")]  # the relist replaces what is held
    assert stop.waits == []


def test_failed_requests_back_off_doubling_and_list_again() -> None:
    api, events, stop = run(
        [
            TransientBackendError(
                "GET /apis/converged.dev/v1alpha1/workflowsteps: HTTP 503 Service Unavailable"
            ),
            TransientBackendError("GET /apis/converged.dev/v1alpha1/workflowsteps: ConnectionRefusedError"),
            ([], "rv-1"),
            PermanentBackendError("watch /apis/converged.dev/v1alpha1/workflowsteps: HTTP 410 Gone"),
            ([step("a", "rv-2")], "rv-3"),
            [("ADDED", step("b", "rv-4"))],
        ]
    )
    assert [c[:2] for c in api.calls] == [
        ("list", "team-a"),
        ("list", "team-a"),
        ("list", "team-a"),
        ("watch", "rv-1"),
        ("list", "team-a"),  # a watch refused with HTTP 410: list again, as for the ERROR event
        ("watch", "rv-3"),
        ("watch", "rv-4"),
    ]
    assert stop.waits == [0.5, 1.0, 0.5]  # doubling; a good LIST starts the backoff over
    assert kinds(events) == ["SYNC", "SYNC", "ADDED b"]


def test_a_stop_during_a_watch_ends_the_watcher_at_the_next_event() -> None:
    stop = Stop()

    class StoppedMidWatch(ScriptedSteps):
        def watch_steps(
            self,
            resource_version: str,
            namespace: str | None = None,
            timeout_seconds: int = 300,
            label_selector: str = "",
        ) -> Iterator[tuple[str, dict[str, Any]]]:
            self.calls.append(("watch", resource_version))
            yield "ADDED", step("a", "rv-1")
            stop.set()  # the controller stops while the watch is open
            yield "ADDED", step("b", "rv-2")  # already on its way: passed on, then the watcher ends
            yield "ADDED", step("c", "rv-3")

    api = StoppedMidWatch([([], "rv-0")], stop)
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    watch_steps(cast(WorkflowSteps, api), SETTINGS, events, stop)
    assert api.calls == [("list", "team-a", "!converged.dev/controller"), ("watch", "rv-0")]
    assert kinds([events.get_nowait() for _ in range(events.qsize())]) == ["SYNC", "ADDED a", "ADDED b"]
