"""The informer (kube.informer): LIST, then WATCH resumed from the last resourceVersion, LIST again on an
ERROR event or 410 Gone; and the Kueue unit planning from its informers' caches, never from part of them.

The fake is our own edge, `KubeCore` (its `request` and `watch`), fed with a real LIST answer and real
WATCH lines of Kubernetes 1.37 (tests/data/kube-1.37/, captured by its capture.py).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from converged_bridge.api.workflowstep import Phase, WorkflowStep
from converged_bridge.backends.kueue import KueueBackend
from converged_bridge.backends.kueue.operators import KueueSite
from converged_bridge.kube.core import Gone, KubeCore, NotFound
from converged_bridge.kube.informer import Informer, InformerSettings
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.reconcile.intents import WriteStatus
from converged_bridge.reconcile.status import StatusTiming
from converged_bridge.wire import JOBS, KUEUE_GROUP, Kind

DATA = Path(__file__).resolve().parents[1] / "data" / "kube-1.37"
NOW_SETTINGS = InformerSettings(min_backoff=0.0, absent_retry=0.0)
WORKLOADS = Kind(KUEUE_GROUP, "v1beta2", "workloads", "Workload")


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def watch_lines(name: str) -> list[tuple[str, dict[str, Any]]]:
    """The (type, object) events of a captured WATCH answer, one JSON line each."""
    events = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]
    return [(e["type"], e["object"]) for e in events]


Answer = dict[str, Any] | Exception
Stream = list[tuple[str, dict[str, Any]]] | Exception


class ScriptedCore(KubeCore):
    """LIST answers and WATCH streams in order, per path; what was asked is kept in `asked`. When a
    path's script is spent, `on_spent` runs (a test stops the informer there) and the watch ends."""

    def __init__(self, lists: dict[str, list[Answer]], watches: dict[str, list[Stream]]) -> None:
        super().__init__(None, field_manager="test")
        self.lists = lists
        self.watches = watches
        self.asked: list[tuple[str, str, str | None]] = []  # (verb, path, resourceVersion)
        self.on_spent: Callable[[], None] = lambda: None

    def request(
        self,
        verb: str,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        self.count(verb)
        self.asked.append((verb, path, None))
        answers = self.lists.get(path) or [NotFound(path)]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return copy.deepcopy(answer)

    def watch(
        self, path: str, query: list[tuple[str, str]], timeout_seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        self.count("watch")
        self.asked.append(("watch", path, dict(query)["resourceVersion"]))
        script = self.watches.get(path) or []
        if not script:
            self.on_spent()
            return
        stream = script.pop(0)
        if isinstance(stream, Exception):
            raise stream
        yield from copy.deepcopy(stream)


def jobs_informer(core: ScriptedCore) -> Informer:
    informer = Informer(KubeObjects(core), JOBS, label_selector="app=x", settings=NOW_SETTINGS)
    core.on_spent = informer.stop
    return informer


JOBS_PATH = "/apis/batch/v1/jobs"


def names(informer: Informer) -> list[str]:
    return sorted(o["metadata"]["name"] for o in informer.items())


def test_lists_then_watches_and_resumes_from_the_last_resource_version() -> None:
    listed = load("jobs-list.json")
    first, second = watch_lines("jobs-watch-1.jsonl"), watch_lines("jobs-watch-2.jsonl")
    core = ScriptedCore({JOBS_PATH: [listed]}, {JOBS_PATH: [first, second]})
    informer = jobs_informer(core)
    changes: list[int] = []
    informer._on_change = lambda: changes.append(len(informer))

    informer.run()  # on this thread, until the scripts are spent

    assert informer.synced.is_set() and informer.lists == 1
    last_of_first = first[-1][1]["metadata"]["resourceVersion"]  # a BOOKMARK's, or an object's
    assert core.asked == [
        ("list", JOBS_PATH, None),
        ("watch", JOBS_PATH, listed["metadata"]["resourceVersion"]),
        ("watch", JOBS_PATH, last_of_first),  # the server ended the first watch: resumed, not relisted
        ("watch", JOBS_PATH, second[-1][1]["metadata"]["resourceVersion"]),
    ]
    expected = {o["metadata"]["name"]: o for o in listed["items"]}
    for type_, obj in first + second:
        if type_ in ("ADDED", "MODIFIED"):
            expected[obj["metadata"]["name"]] = obj
        elif type_ == "DELETED":
            expected.pop(obj["metadata"]["name"])
    assert {o["metadata"]["name"]: o for o in informer.items()} == expected
    # its listener hears of the LIST and of each change, after the cache has it (not of BOOKMARKs)
    assert len(changes) == 1 + sum(1 for type_, _ in first + second if type_ != "BOOKMARK")
    assert changes[0] == len(listed["items"]) and changes[-1] == len(expected)


def test_an_error_event_lists_again_and_the_list_replaces_the_cache() -> None:
    listed, relisted = load("jobs-list.json"), load("jobs-list-later.json")
    expired = watch_lines("watch-expired.jsonl")  # the ERROR event of a WATCH from a compacted version
    assert expired[0][0] == "ERROR" and expired[0][1]["code"] == 410
    core = ScriptedCore({JOBS_PATH: [listed, relisted]}, {JOBS_PATH: [expired]})
    informer = jobs_informer(core)

    informer.run()

    assert informer.lists == 2
    assert [verb for verb, _, _ in core.asked] == ["list", "watch", "list", "watch"]
    assert core.asked[-1][2] == relisted["metadata"]["resourceVersion"]
    assert names(informer) == sorted(o["metadata"]["name"] for o in relisted["items"])


def test_410_gone_from_the_watch_request_lists_again_and_other_failures_resume() -> None:
    listed = load("jobs-list.json")
    rv = listed["metadata"]["resourceVersion"]
    core = ScriptedCore(
        {JOBS_PATH: [listed]},
        {JOBS_PATH: [_transient(), Gone("watch: gone (410)")]},
    )
    informer = jobs_informer(core)

    informer.run()

    assert core.asked == [
        ("list", JOBS_PATH, None),
        ("watch", JOBS_PATH, rv),
        ("watch", JOBS_PATH, rv),  # a dropped connection: the same version again
        ("list", JOBS_PATH, None),  # 410: that version is gone
        ("watch", JOBS_PATH, rv),
    ]


def _transient() -> Exception:
    from converged_bridge.errors import TransientBackendError

    return TransientBackendError("watch: ProtocolError: connection reset")


def test_a_kind_the_server_does_not_serve_is_synced_empty_and_listed_again_later() -> None:
    listed = load("jobs-list.json")
    core = ScriptedCore({JOBS_PATH: [NotFound("not served"), listed]}, {})
    informer = jobs_informer(core)
    seen: list[tuple[bool, bool, int]] = []  # what readers saw when each LIST was asked

    class Watching(ScriptedCore):
        def request(self, verb: str, method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
            seen.append((informer.synced.is_set(), informer.absent, len(informer)))
            return core.request(verb, method, path, *args, **kwargs)

    informer._objects = KubeObjects(Watching({}, {}))
    informer._objects.core.watch = core.watch  # type: ignore[method-assign]
    informer.run()

    assert seen == [(False, False, 0), (True, True, 0)]  # absent: synced and empty until listed again
    assert (informer.absent, informer.lists, len(informer)) == (False, 1, len(listed["items"]))


# --- the Kueue unit over its informers ---


class GatedCore(ScriptedCore):
    """LISTs wait for `gate`; WATCHes stay open (yield nothing) until `released`."""

    def __init__(self, lists: dict[str, list[Answer]]) -> None:
        super().__init__(lists, {})
        self.gate = threading.Event()
        self.released = threading.Event()

    def request(self, verb: str, method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if verb == "list":
            self.gate.wait()
        return super().request(verb, method, path, *args, **kwargs)

    def watch(
        self, path: str, query: list[tuple[str, str]], timeout_seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        self.count("watch")
        self.asked.append(("watch", path, dict(query)["resourceVersion"]))
        self.released.wait()
        yield from ()


def test_the_kueue_unit_plans_from_its_informers_once_all_are_synced_and_lists_no_more() -> None:
    step = WorkflowStep.model_validate(load("workflowstep-kueue.json"))
    core = GatedCore(
        {
            JOBS_PATH: [load("step-jobs-list.json")],
            "/apis/kueue.x-k8s.io/v1beta2/workloads": [load("step-workloads-list.json")],
            "/api/v1/pods": [load("step-pods-list.json")],
            "/api/v1/namespaces": [load("namespaces-list.json")],
        }
    )
    site = KueueSite(default_local_queue="default")
    unit = KueueBackend(KubeObjects(core), site, workloads=lambda: WORKLOADS, sync_wait=0.0)
    timing = StatusTiming(now=step.metadata.creation_timestamp)  # type: ignore[arg-type]
    try:
        unit.observe([step])
        assert unit.decide(step, timing) is None  # no informer has listed yet: no plan from nothing

        core.gate.set()
        assert unit.informers is not None
        for informer in unit.informers.all():
            informer.synced.wait()
        for _ in range(3):
            unit.observe([step])
        plan = unit.decide(step, timing)
        lists = [path for verb, path, _ in core.asked if verb == "list"]
    finally:
        core.released.set()
        unit.close()

    assert plan is not None
    written = [i for i in plan if isinstance(i, WriteStatus)]
    assert written and written[0].status.phase == Phase.SUCCEEDED
    assert written[0].status.backend_ref is not None and written[0].status.backend_ref.workload
    assert len(lists) == len(set(lists))  # one LIST per kind, whatever the number of cycles
