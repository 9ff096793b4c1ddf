"""Start, find and stop the daemons we started — by pid file, never by process name.

Every daemon runs in the foreground of its own session (its pid is the one we recorded),
writes to logs/<name>.log, and is identified by pid file plus the executable recorded in it,
so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .layout import Layout


class ClusterError(RuntimeError):
    """A component could not be brought up; the message says which and where its log is."""


class Exited(ClusterError):
    """A daemon being waited for has exited: `wait_until` gives up at once instead of at its timeout."""


@dataclass
class Daemon:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None  # run as this Unix user (via setpriv), else as ourselves


def _pidfile(layout: Layout, name: str) -> Path:
    return layout.run / f"{name}.pid"


def log_path(layout: Layout, name: str) -> Path:
    return layout.logs / f"{name}.log"


def _exe_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def running(layout: Layout, name: str) -> int | None:
    """Pid of our daemon `name` if it is alive and still the program we started."""
    pf = _pidfile(layout, name)
    try:
        pid_s, exe = pf.read_text().split("\n", 1)
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    actual = _exe_of(pid)
    if actual is None or _is_zombie(pid):
        return None
    if actual.removesuffix(" (deleted)") != exe.strip():
        return None
    return pid


# programs that exec the daemon, never the daemon itself
WRAPPERS = ("/setpriv", "/unshare", "/sh", "/dash", "/bash", "/env")


def start(layout: Layout, d: Daemon) -> int:
    """Start `d` unless it already runs; returns its pid."""
    pid = running(layout, d.name)
    if pid is not None:
        return pid
    layout.ensure()
    argv = list(d.argv)
    if d.user:
        argv = ["setpriv", f"--reuid={d.user}", f"--regid={d.user}", "--init-groups", "--", *argv]
    env = {**os.environ, **d.env}
    with open(log_path(layout, d.name), "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} start {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # "/" unless the daemon names its own: never the caller's directory, which may be a
            # checkout deleted later (slurmrestd then fails every submission on getcwd and dies)
            cwd=d.cwd or "/",
            env=env,
            start_new_session=True,
        )
    # setpriv, unshare, sh and env exec the real program: wait until the exe is no longer one of them
    exe: str | None = None
    for _ in range(250):
        exe = _exe_of(proc.pid)
        if exe is None or not exe.endswith(WRAPPERS):
            break
        time.sleep(0.02)
    if exe is None or proc.poll() is not None:
        raise ClusterError(f"{d.name} exited at once; see {log_path(layout, d.name)}")
    _pidfile(layout, d.name).write_text(f"{proc.pid}\n{exe}\n")
    return proc.pid


def stop(layout: Layout, name: str, timeout: float = 20.0) -> bool:
    """Stop our daemon `name` (SIGTERM, then SIGKILL). Returns True if it was running."""
    pid = running(layout, name)
    pf = _pidfile(layout, name)
    if pid is None:
        pf.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running(layout, name) is not None:
        time.sleep(0.1)
    if running(layout, name) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while running(layout, name) is not None:
            time.sleep(0.05)
    pf.unlink(missing_ok=True)
    return True


def started_names(layout: Layout) -> list[str]:
    """Names of every daemon we have a pid file for, alive or not."""
    if not layout.run.is_dir():
        return []
    return sorted(p.stem for p in layout.run.glob("*.pid"))


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, log: Path | None = None, interval: float = 0.25
) -> None:
    """Poll `check` until it returns True; raise ClusterError naming `what` (and its log) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exited:
            raise  # the probe knows it is over (the daemon exited): no point in waiting
        except Exception:  # noqa: BLE001, S110 - any other failure of a probe means "not yet"
            pass
        if time.monotonic() > deadline:
            where = f"; see {log}" if log else ""
            raise ClusterError(f"{what} not ready after {timeout:.0f}s{where}")
        time.sleep(interval)


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short command, capturing text output; raise ClusterError with its stderr on failure."""
    full_env = {**os.environ, **(env or {})}
    try:
        cp = subprocess.run(
            list(argv), capture_output=True, text=True, input=input, env=full_env, timeout=timeout, cwd=cwd
        )
    except subprocess.TimeoutExpired as e:
        raise ClusterError(f"{argv[0]} timed out after {timeout}s") from e
    if check and cp.returncode != 0:
        raise ClusterError(f"{' '.join(argv[:3])} failed ({cp.returncode}): {cp.stderr.strip()[-2000:]}")
    return cp


Probe = Callable[[], tuple[bool, str]]  # (healthy, detail)


def wait_or_raise(
    layout: Layout, what: str, check: Callable[[], bool], timeout: float, logs: list[str]
) -> None:
    """wait_until, but a ClusterError raised by the probe ends the wait at once; a timeout names the logs
    of the daemons `logs`."""
    fatal: list[ClusterError] = []

    def probe() -> bool:
        try:
            return bool(check())
        except ClusterError as e:
            fatal.append(e)
            return True

    where = ", ".join(str(log_path(layout, n)) for n in logs)
    try:
        wait_until(what, probe, timeout)
    except ClusterError as e:
        raise ClusterError(f"{e}; see {where}") from None
    if fatal:
        raise fatal[0]


def start_and_wait(layout: Layout, d: Daemon, probe: Probe, timeout: float) -> None:
    """Start `d` and wait until `probe` says healthy; its exit ends the wait with an error naming its log."""
    start(layout, d)

    def check() -> bool:
        if running(layout, d.name) is None:
            raise ClusterError(f"{d.name} exited; see {log_path(layout, d.name)}")
        return probe()[0]

    wait_or_raise(layout, d.name, check, timeout, [d.name])
