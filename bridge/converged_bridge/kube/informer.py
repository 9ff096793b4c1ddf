"""A cache of one kind's objects kept by a LIST and then a WATCH (client-go's informer, in small).

One thread per informer: LIST (the cache becomes its items, `synced` is set), then WATCH from the
list's resourceVersion, applying each ADDED / MODIFIED / DELETED to the cache. When the server ends a
watch (its timeout) or the connection drops, the next watch resumes from the last resourceVersion seen
(an object's or a BOOKMARK's); only an ERROR event or 410 Gone (that version compacted away) makes it
LIST again. resourceVersions are opaque strings: kept and sent back, never compared.

A kind the API server does not serve (LIST answers 404) counts as synced and empty, `absent` is set,
and the LIST is tried again every `absent_retry` seconds (a CRD installed later is picked up).

Readers take `items()`, a list of the cached objects; an object is replaced whole by the next version,
never changed in place, so readers must not change it either.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from converged_bridge.errors import BackendError
from converged_bridge.kube.core import Gone, NotFound, object_path
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.wire import Kind

log = logging.getLogger("converged.kube.informer")


@dataclass(frozen=True)
class InformerSettings:
    watch_timeout: int = 300  # seconds the server keeps one WATCH open before it is renewed
    absent_retry: float = 60.0  # seconds between LISTs of a kind the server does not serve
    min_backoff: float = 0.5  # first wait after a failed LIST or WATCH, doubled each time after
    max_backoff: float = 30.0  # longest wait after a failed LIST or WATCH


class Informer:
    """The objects of `kind` (in `namespace`, or all) matching `label_selector`, kept current."""

    def __init__(
        self,
        objects: KubeObjects,
        kind: Kind,
        *,
        label_selector: str | None = None,
        namespace: str | None = None,
        settings: InformerSettings | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._objects = objects
        self._on_change = on_change  # called (on the informer's thread) after each change to the cache
        self.kind = kind
        self._selector = label_selector
        self._namespace = namespace
        self._settings = settings or InformerSettings()
        self._cache: dict[str, dict[str, Any]] = {}  # uid -> latest object
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()  # set after the first LIST answered (or the kind is absent)
        self.absent = False  # the last LIST said the server does not serve the kind
        self.resource_version: str | None = None  # the last one seen; None: LIST next
        self.lists = 0  # LISTs made (the first and every relist)

    # --- readers ---
    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._cache.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    # --- hosting ---
    def start(self) -> None:
        name = f"informer-{self.kind.plural}"
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it ends when its open WATCH yields next or times out (a daemon
        thread, so no process waits for it)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """LIST, then WATCH and resume, until `stop()`."""
        backoff = self._settings.min_backoff
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                    if self.absent:
                        self._stop.wait(self._settings.absent_retry)
                        continue
                self._follow()
                backoff = self._settings.min_backoff
            except Gone:
                self.resource_version = None
            except BackendError as e:
                log.warning("%s: list/watch failed, again in %.1fs: %s", self.kind.plural, backoff, e)
                self._stop.wait(backoff)
                backoff = min(max(backoff * 2, 0.1), self._settings.max_backoff)

    # --- one LIST, one WATCH ---
    def _relist(self) -> None:
        try:
            doc = self._objects.list_page(self.kind, self._selector, None, self._namespace)
        except NotFound:
            with self._lock:
                self._cache = {}
            self.absent = True
            self.synced.set()
            return
        fresh = {_uid(o): o for o in doc.get("items") or []}
        with self._lock:
            self._cache = fresh
        self._changed()
        self.absent = False
        self.lists += 1
        self.resource_version = str(doc["metadata"]["resourceVersion"])
        self.synced.set()

    def _follow(self) -> None:
        """One WATCH from `resource_version` until the server ends it; ERROR: LIST next."""
        for type_, obj in self._watch(str(self.resource_version)):
            if type_ == "ERROR":
                log.info("%s: watch ended with %s; listing again", self.kind.plural, obj.get("message"))
                self.resource_version = None
                return
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if type_ in ("ADDED", "MODIFIED"):
                with self._lock:
                    self._cache[_uid(obj)] = obj
            elif type_ == "DELETED":
                with self._lock:
                    self._cache.pop(_uid(obj), None)
            if type_ != "BOOKMARK":
                self._changed()
            if rv:
                self.resource_version = str(rv)
            if self._stop.is_set():
                return

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _watch(self, resource_version: str) -> Iterator[tuple[str, dict[str, Any]]]:
        query = [("resourceVersion", resource_version)]
        if self._selector:
            query.append(("labelSelector", self._selector))
        path = object_path(self.kind, None, self._namespace)
        return self._objects.core.watch(path, query, self._settings.watch_timeout)


def _uid(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
