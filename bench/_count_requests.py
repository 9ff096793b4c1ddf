"""Run snakemake in this process with every Kubernetes API request recorded (for bench/status_calls.py).

Usage: <venv>/bin/python bench/_count_requests.py OUTFILE -- SNAKEMAKE_ARGS...

Both plugins compared talk to the API server through the official `kubernetes` client, whose every
request goes through `kubernetes.client.rest.RESTClientObject.request`. This wrapper patches that method
and the `check_active_jobs` async generator of the executor named by `--executor`, then calls
snakemake's own `main`. OUTFILE gets one JSON object per line, flushed as it happens:

- `{"kind": "request", "t", "method", "path", "query", "thread", "cycle", "status", "bytes"}`: one API
  request. `path` has no query string; `query` names the query parameters (never their values); `cycle`
  is the status cycle whose code made the request, or null; `status` is the HTTP status (null if none
  came); `bytes` the size of the response body (null for an error or a WATCH).
- `{"kind": "cycle", "cycle", "active", "still_active", "start", "end", "thread"}`: one call of
  `check_active_jobs`, written when it ends; `active` is `len(active_jobs)` it was given.

Attribution uses a context variable that is set only while the plugin's generator runs (between its
resumptions snakemake's own code runs, in the same thread): requests made elsewhere — job submission
on the main thread, an embedded controller's threads — have `cycle` null. Python starts every thread
with an empty context, and `asyncio.to_thread` copies it, so a cycle's requests are counted wherever the
plugin makes them.

It runs in the venv of the plugin under test: the standard library only at import time.
"""

from __future__ import annotations

import contextvars
import importlib
import itertools
import json
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit

CURRENT_CYCLE: contextvars.ContextVar[int | None] = contextvars.ContextVar("status_cycle", default=None)

CheckActiveJobs = Callable[[Any, list[Any]], AsyncGenerator[Any, None]]


class Recorder:
    """Writes the JSON lines; safe to call from any thread."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._cycles = itertools.count(1)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def next_cycle(self) -> int:
        with self._lock:
            return next(self._cycles)


def query_names(url: str, query_params: Any) -> list[str]:
    """Names of the query parameters, from the URL and from the older clients' `query_params` list."""
    names = [name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)]
    if isinstance(query_params, dict):
        names += [str(name) for name in query_params]
    elif query_params:
        names += [str(pair[0]) for pair in query_params]
    return sorted(set(names))


def body_size(response: Any) -> int | None:
    """Bytes of the response body. Older clients read it before returning; newer ones return a wrapper
    whose `read()` reads it once and keeps it for the caller (never called on a WATCH stream)."""
    data = getattr(response, "data", None)
    if data is None and callable(getattr(response, "read", None)):
        data = response.read()
    return len(data) if isinstance(data, bytes | str) else None


def patch_rest_client(recorder: Recorder) -> None:
    from kubernetes.client import rest

    original: Callable[..., Any] = rest.RESTClientObject.request

    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        record: dict[str, Any] = {
            "kind": "request",
            "t": time.time(),
            "method": str(method).upper(),
            "path": urlsplit(url).path,
            "query": query_names(url, kwargs.get("query_params")),
            "thread": threading.current_thread().name,
            "cycle": CURRENT_CYCLE.get(),
            "status": None,
        }
        try:
            response = original(self, method, url, *args, **kwargs)
        except Exception as e:
            record["status"] = getattr(e, "status", None)
            recorder.write(record)
            raise
        record["status"] = getattr(response, "status", None)
        record["bytes"] = None if "watch" in record["query"] else body_size(response)
        recorder.write(record)
        return response

    rest.RESTClientObject.request = request  # type: ignore[method-assign]


def counted(original: CheckActiveJobs, recorder: Recorder) -> CheckActiveJobs:
    """`check_active_jobs`, attributing the requests made while its body runs to a numbered cycle."""

    async def check_active_jobs(self: Any, active_jobs: list[Any]) -> AsyncGenerator[Any, None]:
        cycle = recorder.next_cycle()
        start = time.time()
        still_active = 0
        inner = original(self, active_jobs)
        try:
            while True:
                token = CURRENT_CYCLE.set(cycle)
                try:
                    job_info = await inner.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    CURRENT_CYCLE.reset(token)
                still_active += 1
                yield job_info
        finally:
            await inner.aclose()
            recorder.write(
                {
                    "kind": "cycle",
                    "cycle": cycle,
                    "active": len(active_jobs),
                    "still_active": still_active,
                    "start": start,
                    "end": time.time(),
                    "thread": threading.current_thread().name,
                }
            )

    return check_active_jobs


def executor_name(args: list[str]) -> str:
    for i, arg in enumerate(args):
        if arg.startswith("--executor="):
            return arg.split("=", 1)[1]
        if arg in ("--executor", "-e") and i + 1 < len(args):
            return args[i + 1]
    raise SystemExit("_count_requests: the snakemake arguments name no --executor")


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit(__doc__)
    outfile, snakemake_args = argv[0], argv[2:]
    plugin = importlib.import_module(
        f"snakemake_executor_plugin_{executor_name(snakemake_args).replace('-', '_')}"
    )
    out = open(outfile, "a", encoding="utf-8")  # noqa: SIM115 - open until the process exits
    recorder = Recorder(out)
    patch_rest_client(recorder)
    plugin.Executor.check_active_jobs = counted(plugin.Executor.check_active_jobs, recorder)
    from snakemake.cli import main as snakemake_main

    sys.argv = ["snakemake", *snakemake_args]
    snakemake_main()


if __name__ == "__main__":
    main(sys.argv[1:])
