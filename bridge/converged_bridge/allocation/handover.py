"""The controller's side of the hand-over on the shared filesystem (I/O): read what the agent recorded,
hand a step over, mark a step cancelled, close the spool. `parse_*` are pure.

Crash-safe and exactly once: a step is handed over by writing its script under `tmp/` and linking it
to `inbox/<uid>` (a link never replaces: a second hand-over of the same step fails, and a controller
that crashed between the two leaves only a stray `tmp/` file); what is handed over is read back from
the directories, never from memory, so a restarted controller sees what its predecessor did. Reading
order within one snapshot: the spool (inbox, cancel, closed) before the agent's records (done, started,
claimed), so a cancel marker seen here was written before the claims were read.
"""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from converged_bridge.allocation.paths import AllocationPaths
from converged_bridge.errors import TransientBackendError

log = logging.getLogger("converged.controller.allocation")


@dataclass(frozen=True)
class StepResult:
    """A step's end as the agent recorded it; `exit_code` None: skipped (cancelled before it started)."""

    exit_code: int | None
    started: datetime | None
    ended: datetime
    stopped: bool = False  # the agent stopped it because the allocation itself was ending


@dataclass(frozen=True)
class Handover:
    """What an allocation's two directories hold, read once per cycle."""

    readable: bool = True  # False: the directories could not be read from here
    handed: frozenset[str] = frozenset()  # inbox
    cancelled: frozenset[str] = frozenset()  # cancel markers
    closed: bool = False
    claimed: frozenset[str] = frozenset()
    started: Mapping[str, datetime] = field(default_factory=dict)
    done: Mapping[str, StepResult] = field(default_factory=dict)


UNREADABLE = Handover(readable=False)


def parse_epoch(text: str) -> datetime | None:
    """Epoch seconds as the agent writes them (`1764488763.123456`), as an aware time; None if not one."""
    try:
        value = float(text)
    except ValueError:
        return None
    return datetime.fromtimestamp(value, tz=UTC) if value > 0 else None


def parse_step_result(text: str) -> StepResult | None:
    """`done/<uid>`: `<exit code> <start> <end> [stopped]`, or `cancelled <time>`; None when malformed."""
    words = text.split()
    if len(words) == 2 and words[0] == "cancelled" and (ended := parse_epoch(words[1])):
        return StepResult(None, None, ended)
    stopped = words[3:] == ["stopped"]
    if len(words) != 3 + stopped or not words[0].isdigit():
        return None
    started, ended = parse_epoch(words[1]), parse_epoch(words[2])
    code = int(words[0])
    if ended is None or code > 255:
        return None
    return StepResult(code, started, ended, stopped)


class HandoverReader:
    """Reads allocations' directories, each agent record once (a record never changes once written)."""

    def __init__(self) -> None:
        self._started: dict[str, dict[str, datetime]] = {}  # spool -> uid -> time
        self._done: dict[str, dict[str, StepResult]] = {}

    def read(self, paths: AllocationPaths) -> Handover:
        try:
            handed = _names(f"{paths.spool}/inbox")
            cancelled = _names(f"{paths.spool}/cancel")
            closed = os.path.exists(paths.closed)
            done = self._done.setdefault(paths.spool, {})
            for uid in _names(f"{paths.state}/done") - done.keys():
                result = parse_step_result(_read(f"{paths.state}/done/{uid}"))
                if result is not None:
                    done[uid] = result
            started = self._started.setdefault(paths.spool, {})
            for uid in _names(f"{paths.state}/started") - started.keys():
                moment = parse_epoch(_read(f"{paths.state}/started/{uid}").strip())
                if moment is not None:
                    started[uid] = moment
            claimed = _names(f"{paths.state}/claimed")
        except OSError as e:
            log.warning("reading the hand-over of %s failed: %s", paths.spool, e)
            return UNREADABLE
        return Handover(True, handed, cancelled, closed, claimed, dict(started), dict(done))

    def forget(self, paths: AllocationPaths) -> None:
        self._started.pop(paths.spool, None)
        self._done.pop(paths.spool, None)


def _names(directory: str) -> frozenset[str]:
    """File names in `directory` (none when it does not exist yet), without the agent's `.part` files and
    the warm specs beside the inbox's scripts."""
    try:
        return frozenset(n for n in os.listdir(directory) if not n.endswith((".part", ".warm")))
    except FileNotFoundError:
        return frozenset()


def _read(path: str) -> str:
    with open(path) as f:
        return f.read(256)


def prepare_spool(paths: AllocationPaths) -> None:
    """The spool's directories (readable by the agent, written by this process only)."""
    try:
        for sub in ("inbox", "cancel", "tmp"):
            Path(paths.spool, sub).mkdir(parents=True, exist_ok=True, mode=0o755)
    except OSError as e:
        raise TransientBackendError(f"cannot make the allocation spool {paths.spool}: {e}") from e


def prepare_user_dir(path: str, user: str | int | None) -> None:
    """`path` (and parents) made, and owned by `user` (a name or uid) when this process is root: where the
    agent, running as that user, writes. Without the right to, nothing: the run's directory is the user's."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True, mode=0o755)
        if os.geteuid() == 0 and user is not None:
            uid, gid = (user, -1) if isinstance(user, int) else pwd.getpwnam(user)[2:4]
            os.chown(path, uid, gid)
    except (OSError, KeyError):
        return


def _write(paths: AllocationPaths, name: str, text: str) -> str:
    """`text` in a new file of the spool's tmp/ (readable by the agent); its path."""
    tmp = f"{paths.spool}/tmp/{name}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    return tmp


def write_warm_launcher(paths: AllocationPaths, script: str) -> None:
    """The spool's `warm` script, which the agent runs to start the allocation's warm snakemake."""
    prepare_spool(paths)
    try:
        os.replace(_write(paths, "warm", script), f"{paths.spool}/warm")
    except OSError as e:
        raise TransientBackendError(f"cannot write the warm launcher of {paths.spool}: {e}") from e


def hand_over(paths: AllocationPaths, uid: str, script: str, warm: str | None = None) -> bool:
    """Put step `uid`'s script (and, for the warm launcher, its spec `<uid>.warm` first) into the inbox;
    False when it is there already (handed over before)."""
    prepare_spool(paths)
    target = paths.inbox(uid)
    if os.path.exists(target):
        return False
    try:
        if warm is not None:
            os.replace(_write(paths, f"{uid}.warm", warm), f"{target}.warm")
        tmp = _write(paths, uid, script)
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
    except OSError as e:
        raise TransientBackendError(f"cannot hand step {uid} over to {paths.spool}: {e}") from e
    return True


def mark_cancelled(paths: AllocationPaths, uid: str) -> bool:
    """Write `cancel/<uid>`, then say whether the agent had claimed the step when we looked after."""
    prepare_spool(paths)
    try:
        Path(paths.cancel(uid)).touch(mode=0o644)
        return os.path.exists(f"{paths.state}/claimed/{uid}")
    except OSError as e:
        raise TransientBackendError(f"cannot cancel step {uid} in {paths.spool}: {e}") from e


def mark_closed(paths: AllocationPaths) -> None:
    """No step will come any more: the agent ends once its steps have."""
    prepare_spool(paths)
    try:
        Path(paths.closed).touch(mode=0o644)
    except OSError as e:
        raise TransientBackendError(f"cannot close {paths.spool}: {e}") from e
