"""Typed snapshots of Slurm jobs, parsed from what Slurm answers (pure: no I/O).

Slurm speaks several dialects for the same facts:
- slurmrestd `openapi/v0.0.38` (Slurm 22.05) and `squeue --json` of 22.05: flat fields,
  `exit_code` as the raw wait status (768 = exit 3, 9 = killed by signal 9);
- slurmrestd `v0.0.40`..`v0.0.45` (Slurm 23.11+, captured from 24.11 and 26.05) and their
  `squeue --json`: states as lists, numbers as {set, infinite, number} objects, `exit_code` as an object
  with status / return_code / signal. From v0.0.43 on, `standard_output`/`standard_error` are the raw
  patterns (`log-%j.txt`) and `stdout_expanded`/`stderr_expanded` the paths (26.05.5 in all four);
- `sacct -P` (parsable2): `ExitCode` as `code:signal`, the only 22.05 accounting source that keeps
  a non-zero exit code (sacct --json and slurmdb v0.0.38 report exit 3 as SUCCESS/0).
Each parser returns the same `SlurmJob`, so decisions never look at the dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

COMMENT_PREFIX = "converged:"  # a job carrying `converged:<step uid>` belongs to that step


class JobState(StrEnum):
    """Slurm's base job states (flags such as COMPLETING are carried separately)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    # not base states in slurm.h, but reported as the current state by some interfaces
    REQUEUED = "REQUEUED"
    RESIZING = "RESIZING"
    REVOKED = "REVOKED"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: str) -> JobState:
        # sacct prints "CANCELLED by 0"; some versions append "+" for flags
        word = value.strip().split(" ", 1)[0].rstrip("+").upper()
        try:
            return cls(word)
        except ValueError:
            return cls.UNKNOWN


TERMINAL_STATES = frozenset(
    {
        JobState.COMPLETED,
        JobState.CANCELLED,
        JobState.FAILED,
        JobState.TIMEOUT,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
        JobState.OUT_OF_MEMORY,
        JobState.REVOKED,
        JobState.SPECIAL_EXIT,
    }
)


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """What converged needs to know about one Slurm job, whatever dialect it came from."""

    job_id: int
    name: str
    state: JobState
    reason: str = ""  # Slurm's state reason; "" for Slurm's "None"
    comment: str = ""
    user: str = ""
    partition: str = ""
    nodes: str = ""
    exit_code: int | None = None  # the batch script's exit status when it exited
    signal: int | None = None  # the signal that ended it, when one did
    submit_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None  # only set once the job is terminal
    stdout: str = ""
    stderr: str = ""
    time_limit_minutes: int | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def step_uid(self) -> str | None:
        """The WorkflowStep UID this job was submitted for, from its comment."""
        if self.comment.startswith(COMMENT_PREFIX):
            return self.comment.removeprefix(COMMENT_PREFIX) or None
        return None


class SlurmParseError(ValueError):
    """Slurm answered something these parsers do not understand."""


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, Mapping):  # v0.0.40+ number objects
        if not value.get("set", False) or value.get("infinite", False):
            return None
        value = value.get("number")
    if not isinstance(value, int) or value <= 0:
        return None
    return datetime.fromtimestamp(value, tz=UTC)


def _reason(value: Any) -> str:
    return "" if value in (None, "None") else str(value)


def split_wait_status(raw: int) -> tuple[int | None, int | None]:
    """A POSIX wait status (what slurmctld stores) as (exit code, signal)."""
    signal = raw & 0x7F
    if signal:
        return None, signal
    return (raw >> 8) & 0xFF, None


def _build_job(
    job: Mapping[str, Any],
    state: JobState,
    exit_code: int | None,
    signal: int | None,
    start_time: datetime | None,
    time_limit_minutes: int | None,
) -> SlurmJob:
    """The SlurmJob of a slurmctld job record; the fields every dialect spells alike are read here."""
    return SlurmJob(
        job_id=int(job["job_id"]),
        name=str(job.get("name") or ""),
        state=state,
        reason=_reason(job.get("state_reason")),
        comment=str(job.get("comment") or ""),
        user=str(job.get("user_name") or ""),
        partition=str(job.get("partition") or ""),
        nodes=str(job.get("nodes") or ""),
        exit_code=exit_code,
        signal=signal,
        submit_time=_epoch(job.get("submit_time")),
        start_time=start_time,
        end_time=_epoch(job.get("end_time")) if state in TERMINAL_STATES else None,  # else: the expected end
        stdout=_log_path(job, "standard_output", "stdout_expanded"),
        stderr=_log_path(job, "standard_error", "stderr_expanded"),
        time_limit_minutes=time_limit_minutes,
    )


def parse_job_v0038(job: Mapping[str, Any]) -> SlurmJob:
    """One job of slurmrestd v0.0.38 (`/slurm/v0.0.38/jobs`) or 22.05's `squeue --json`."""
    try:
        state = JobState.parse(str(job["job_state"]))
        exit_code, signal = (None, None)
        if state in TERMINAL_STATES and isinstance(job.get("exit_code"), int):
            exit_code, signal = split_wait_status(job["exit_code"])
        limit = job.get("time_limit")
        start = _epoch(job.get("start_time")) if state != JobState.PENDING else None  # pending: an estimate
        return _build_job(job, state, exit_code, signal, start, limit if isinstance(limit, int) else None)
    except (KeyError, TypeError, ValueError) as e:
        raise SlurmParseError(f"unexpected v0.0.38 job record: {e!r}") from e


def parse_jobs_v0038(doc: Mapping[str, Any]) -> list[SlurmJob]:
    """All jobs of a v0.0.38 `jobs` answer (restd body or `squeue --json`)."""
    return [parse_job_v0038(j) for j in _jobs(doc)]


def _number(value: Any) -> int | None:
    """A v0.0.40+ number object ({set, infinite, number}) or a plain int as an int; None if unset."""
    if isinstance(value, Mapping):
        if not value.get("set", False) or value.get("infinite", False):
            return None
        value = value.get("number")
    return value if isinstance(value, int) else None


def _exit_v0040(value: Any) -> tuple[int | None, int | None]:
    """(exit code, signal) of a v0.0.40+ exit_code object."""
    if not isinstance(value, Mapping):
        return None, None
    status = value.get("status") or []
    if "SIGNALED" in status:
        return None, _number((value.get("signal") or {}).get("id"))
    return _number(value.get("return_code")), None


def parse_job_v0040(job: Mapping[str, Any]) -> SlurmJob:
    """One job of slurmrestd v0.0.40-v0.0.45 (`/slurm/<v>/jobs`) or 23.11+'s `squeue --json`."""
    try:
        states = job["job_state"]
        state = JobState.parse(str(states[0] if isinstance(states, list) and states else states))
        exit_code, signal = _exit_v0040(job.get("exit_code")) if state in TERMINAL_STATES else (None, None)
        start = _epoch(job.get("start_time")) if state != JobState.PENDING else None  # pending: an estimate
        return _build_job(job, state, exit_code, signal, start, _number(job.get("time_limit")))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise SlurmParseError(f"unexpected v0.0.40+ job record: {e!r}") from e


def parse_jobs_v0040(doc: Mapping[str, Any]) -> list[SlurmJob]:
    """All jobs of a v0.0.40+ `jobs` answer (restd body or `squeue --json`)."""
    return [parse_job_v0040(j) for j in _jobs(doc)]


# The jobs parser of each data parser version converged reads (slurmrestd's `/slurm/<v>/jobs` and the
# `--json` of squeue speak the same): v0.0.39 (23.02) is not among them.
JOB_PARSERS: Mapping[str, Callable[[Mapping[str, Any]], list[SlurmJob]]] = {
    "v0.0.38": parse_jobs_v0038,
    **{f"v0.0.{n}": parse_jobs_v0040 for n in range(40, 46)},
}


def _jobs(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    jobs = doc.get("jobs")
    if not isinstance(jobs, list):
        raise SlurmParseError("answer has no 'jobs' list")
    return jobs


def _log_path(job: Mapping[str, Any], raw_key: str, expanded_key: str) -> str:
    """A job's stdout or stderr path: Slurm's own expansion where the record carries one (v0.0.43+),
    else the path as given, its common patterns expanded here (v0.0.42 and older answers are
    expanded already by 24.11 and 26.05; 22.05 leaves the patterns in)."""
    expanded = job.get(expanded_key)
    if isinstance(expanded, str) and expanded:
        return expanded
    return _expand_path(str(job.get(raw_key) or ""), job)


def _expand_path(path: str, job: Mapping[str, Any]) -> str:
    """Expand the filename patterns Slurm leaves in stdout/stderr paths (%j, %x, %u, %%)."""
    if "%" not in path:
        return path
    subs = {
        "j": str(job.get("job_id", "")),
        "x": str(job.get("name", "")),
        "u": str(job.get("user_name", "")),
    }
    out, i = [], 0
    while i < len(path):
        c = path[i]
        if c == "%" and i + 1 < len(path):
            nxt = path[i + 1]
            if nxt == "%":
                out.append("%")
                i += 2
                continue
            if nxt in subs:
                out.append(subs[nxt])
                i += 2
                continue
        out.append(c)
        i += 1
    return "".join(out)


SACCT_FIELDS = (
    "JobID",
    "JobName",
    "Partition",
    "User",
    "State",
    "ExitCode",
    "Start",
    "End",
    "NodeList",
    "Reason",
    "Comment",
    "Submit",
    "Timelimit",
)


def parse_sacct_parsable(text: str) -> list[SlurmJob]:
    """`sacct -P -o <fields>` output (with header) as jobs; job steps (`12.batch`) are skipped.

    Any field order is accepted: the header names them. Needs at least JobID, State, ExitCode.
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    header = lines[0].split("|")
    missing = {"JobID", "State", "ExitCode"} - set(header)
    if missing:
        raise SlurmParseError(f"sacct output lacks {sorted(missing)}")
    jobs = []
    for line in lines[1:]:
        row = dict(zip(header, line.split("|", len(header) - 1), strict=False))
        job_id = row["JobID"]
        if not job_id.isdigit():  # 12.batch, 12.extern, 12_3 array tasks are not top-level jobs we submit
            continue
        code, _, sig = row["ExitCode"].partition(":")
        state = JobState.parse(row["State"])
        signal = int(sig) if sig.isdigit() and int(sig) else None
        jobs.append(
            SlurmJob(
                job_id=int(job_id),
                name=row.get("JobName", ""),
                state=state,
                reason=_reason(row.get("Reason")),
                comment=row.get("Comment", ""),
                user=row.get("User", ""),
                partition=row.get("Partition", ""),
                nodes=row.get("NodeList", "") if row.get("NodeList") != "None assigned" else "",
                exit_code=int(code)
                if code.isdigit() and state in TERMINAL_STATES and signal is None
                else None,
                signal=signal,
                submit_time=_iso(row.get("Submit")),
                start_time=_iso(row.get("Start")),
                end_time=_iso(row.get("End")) if state in TERMINAL_STATES else None,
                time_limit_minutes=_minutes(row.get("Timelimit")),
            )
        )
    return jobs


def _iso(value: str | None) -> datetime | None:
    if not value or value in ("Unknown", "None"):
        return None
    try:
        # sacct prints local time without zone; the controller host runs in UTC on our clusters
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        return None


def _minutes(value: str | None) -> int | None:
    """Slurm's [days-]hours:minutes:seconds (or minutes) as whole minutes; None for UNLIMITED."""
    if not value or value in ("UNLIMITED", "Partition_Limit", "INVALID"):
        return None
    days = 0
    if "-" in value:
        d, value = value.split("-", 1)
        days = int(d)
    parts = [int(p) for p in value.split(":")]
    if len(parts) == 1:
        return days * 1440 + parts[0]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return days * 1440 + h * 60 + m + (1 if s else 0)


def index_by_step(jobs: Iterable[SlurmJob]) -> dict[str, SlurmJob]:
    """Jobs keyed by the step UID in their comment; the newest job wins when a UID repeats."""
    out: dict[str, SlurmJob] = {}
    for job in sorted(jobs, key=lambda j: j.job_id):
        uid = job.step_uid
        if uid:
            out[uid] = job
    return out
