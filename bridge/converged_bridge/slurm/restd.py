"""slurmrestd transport: JWT auth, OpenAPI version negotiated from what the server serves.

The server lists its paths at GET /openapi/v3; we pick the newest `/slurm/<version>/jobs` we speak.
Each version is a `Dialect`: how to build a submit body and how to read jobs and errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from converged_bridge.errors import PermanentBackendError, TransientBackendError
from converged_bridge.slurm.batch_script import BatchOptions
from converged_bridge.slurm.capacity import (
    CapacitySnapshot,
    PartitionInfo,
    build_capacity_snapshot,
    parse_nodes_v0038,
    parse_nodes_v0040,
    parse_partitions,
    partitions_known,
)
from converged_bridge.slurm.jobs import SlurmJob, parse_jobs_v0038, parse_jobs_v0040
from converged_bridge.slurm.transport import Submission

# Slurm error numbers that mean "try again": communication with slurmctld (1000-1999), socket and
# protocol errors (5000-5999), and slurmctld being busy or in a reconfiguration.
_TRANSIENT_ERRORS = (
    frozenset({-1, 2051, 2052, 2053}) | frozenset(range(1000, 2000)) | frozenset(range(5000, 6000))
)
_JOB_GONE = frozenset({2017, 2020, 2021})  # invalid job id, already done, already completing
# Refused credentials: 24.11 answers a bad or expired JWT with 511 and error 1007 ("Protocol
# authentication error", inside the transient 1000-1999 range); the same token will not do better.
_AUTH_STATUSES = frozenset({401, 403, 511})


def parse_cancel_errors_none(doc: Mapping[str, Any]) -> list[tuple[int, str]]:
    """v0.0.38-v0.0.41 DELETE answers carry no per-job outcome: 24.11.5 answers HTTP 200 with no error
    even when the job was not cancelled (another user's job, "Access/permission denied")."""
    return []


def parse_cancel_errors_v0042(doc: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(error number, message) of a v0.0.42+ DELETE answer's `status` list, which comes with HTTP 200."""
    out = []
    for entry in doc.get("status") or []:
        error = entry.get("error") if isinstance(entry, Mapping) else None
        if not isinstance(error, Mapping):
            continue
        code = error.get("code")
        if isinstance(code, int) and code != 0:
            out.append((code, str(error.get("message") or error.get("string") or "unknown error")))
    return out


@dataclass(frozen=True)
class Dialect:
    version: str
    build_submit_body: Callable[[Submission], dict[str, Any]]
    parse_jobs: Callable[[Mapping[str, Any]], list[SlurmJob]]
    parse_cancel_errors: Callable[[Mapping[str, Any]], list[tuple[int, str]]]


# --export=NONE: the job starts from a clean environment (the script sets what the step needs).
_JOB_PATH = "/usr/local/bin:/usr/bin:/bin"


def build_submit_body_v0038(sub: Submission) -> dict[str, Any]:
    """v0.0.38 job/submit body. The script's #SBATCH lines are not read by slurmrestd: all options go here."""
    o: BatchOptions = sub.options
    job: dict[str, Any] = {
        "name": o.job_name,
        "comment": o.comment,
        "standard_output": o.output,
        "standard_error": o.error,
        "current_working_directory": sub.working_dir,
        # "min-max": slurmrestd 22.05 accepts the documented [min, max] array and ignores it (the job
        # gets one node); the string form is honoured (checked live: nodes=[2,2] ran on 1 node)
        "nodes": f"{o.nodes}-{o.nodes}",
        "tasks": o.ntasks,
        "cpus_per_task": o.cpus_per_task,
        "environment": {"PATH": _JOB_PATH},
        "requeue": False,
    }
    optional = {
        "memory_per_node": o.mem_mib,
        "time_limit": o.time_minutes,
        "gres": o.gres,
        "partition": o.partition,
        "account": o.account,
        "qos": o.qos,
    }
    job.update({k: v for k, v in optional.items() if v is not None})
    return {"script": sub.script, "job": job}


def build_submit_body_v0040(sub: Submission) -> dict[str, Any]:
    """v0.0.40-v0.0.45 job/submit body (checked against slurmrestd 24.11.5 and 26.05.5, the same for all).

    Differences from v0.0.38: `environment` is a list of "K=V" strings; the node count is
    `minimum_nodes`/`maximum_nodes`; memory and time limit are number objects; and there is no `gres`
    field — v0.0.40/41 warn "Ignoring unknown field", v0.0.42 drops it silently, either way the job
    gets no GPU. GPUs are a per-node TRES, `gres/gpu[:<model>]:<count>`, as sbatch --gres stores it.
    """
    o: BatchOptions = sub.options
    job: dict[str, Any] = {
        "name": o.job_name,
        "comment": o.comment,
        "standard_output": o.output,
        "standard_error": o.error,
        "current_working_directory": sub.working_dir,
        "minimum_nodes": o.nodes,
        "maximum_nodes": o.nodes,
        "tasks": o.ntasks,
        "cpus_per_task": o.cpus_per_task,
        "environment": [f"PATH={_JOB_PATH}"],
        "requeue": False,
    }
    optional = {
        "memory_per_node": None if o.mem_mib is None else _number_v0040(o.mem_mib),
        "time_limit": None if o.time_minutes is None else _number_v0040(o.time_minutes),
        "tres_per_node": None if o.gres is None else f"gres/{o.gres}",
        "partition": o.partition,
        "account": o.account,
        "qos": o.qos,
    }
    job.update({k: v for k, v in optional.items() if v is not None})
    return {"script": sub.script, "job": job}


def _number_v0040(value: int) -> dict[str, Any]:
    """A v0.0.40+ number object (`*_no_val` in the OpenAPI schema)."""
    return {"set": True, "infinite": False, "number": value}


# v0.0.43-v0.0.45 (Slurm 25.05+; checked against 26.05.5, `tests/data/slurm-26.05`) take the v0.0.40 submit
# body unchanged (their job_desc_msg keeps every field sent; none of the fields they add or drop is
# ours), answer a DELETE as v0.0.42 does, and answer refused submissions with HTTP 422 (24.11: 500).
# Their job records carry raw output patterns beside the expanded paths, which parse_jobs_v0040 reads.
DIALECTS: dict[str, Dialect] = {
    "v0.0.38": Dialect("v0.0.38", build_submit_body_v0038, parse_jobs_v0038, parse_cancel_errors_none),
    **{
        v: Dialect(v, build_submit_body_v0040, parse_jobs_v0040, parse_cancel_errors_none)
        for v in ("v0.0.40", "v0.0.41")
    },
    **{
        v: Dialect(v, build_submit_body_v0040, parse_jobs_v0040, parse_cancel_errors_v0042)
        for v in ("v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45")
    },
}

_VERSION_PATH = re.compile(r"^/slurm/(v\d+\.\d+\.\d+)/jobs/?$")


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.lstrip("v").split("."))


def negotiate_version(paths: Sequence[str], preferred: str | None = None) -> str:
    """The API version to speak: `preferred` if served and known, else the newest served one we know."""
    served = {m.group(1) for p in paths if (m := _VERSION_PATH.match(p))}
    if preferred:
        if preferred not in served:
            raise PermanentBackendError(f"slurmrestd does not serve {preferred} (it serves {sorted(served)})")
        if preferred not in DIALECTS:
            raise PermanentBackendError(f"converged does not speak slurmrestd {preferred}")
        return preferred
    usable = sorted(served & DIALECTS.keys(), key=_version_key)
    if not usable:
        raise PermanentBackendError(
            f"slurmrestd serves {sorted(served) or 'no job API'}; converged speaks {sorted(DIALECTS)}"
        )
    return usable[-1]


def parse_errors(doc: Any) -> list[tuple[int, str]]:
    """(error number, message) of a slurmrestd answer's `errors` list (22.05 uses two key spellings)."""
    out = []
    for e in doc.get("errors", []) if isinstance(doc, Mapping) else []:
        number = e.get("error_number", e.get("error_code", -1))
        text = " ".join(str(e[k]) for k in ("error", "description") if e.get(k))
        out.append((int(number) if isinstance(number, int) else -1, text or "unknown error"))
    return out


def classify(
    status: int, errors: list[tuple[int, str]]
) -> type[TransientBackendError | PermanentBackendError]:
    """Transient or permanent, from the HTTP status and Slurm's error numbers."""
    if status in (502, 503, 504, 429):
        return TransientBackendError
    if status in _AUTH_STATUSES:
        return PermanentBackendError
    if status >= 500 and (not errors or all(n in _TRANSIENT_ERRORS for n, _ in errors)):
        return TransientBackendError
    return PermanentBackendError


def classify_job_errors(
    errors: list[tuple[int, str]],
) -> type[TransientBackendError | PermanentBackendError]:
    """Per-job errors inside an HTTP 200 answer (v0.0.42 DELETE `status`): transient only when every
    one is slurmctld communication trouble."""
    if errors and all(n in _TRANSIENT_ERRORS for n, _ in errors):
        return TransientBackendError
    return PermanentBackendError


TokenSource = Callable[[str], str]  # Slurm user -> JWT for that user


class RestdTransport:
    """SlurmTransport over slurmrestd. `token_for(user)` supplies each user's JWT (never logged)."""

    def __init__(
        self,
        url: str,
        token_for: TokenSource,
        *,
        service_user: str,
        api_version: str | None = None,
        timeout: float = 15.0,
        attempts: int = 4,
        client: httpx.Client | None = None,
    ) -> None:
        self._client = client or httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self._token_for = token_for
        self._service_user = service_user
        self._retrying = Retrying(
            retry=retry_if_exception_type(TransientBackendError),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        )
        self._preferred = api_version
        self._dialect: Dialect | None = None
        self.requests = 0  # HTTP requests made, for benchmarks and tests
        self._partitions: tuple[PartitionInfo, ...] | None = None  # last /partitions, for query_capacity

    # --- the SlurmTransport interface ---
    def server_version(self) -> str:
        doc = self._call("GET", f"/slurm/{self.dialect.version}/ping", self._service_user)
        meta = doc.get("meta", {})
        release = (meta.get("slurm") or meta.get("Slurm") or {}).get("release")  # 23.11+ / 22.05
        return str(release or "unknown")

    def submit(self, submission: Submission) -> int:
        body = self.dialect.build_submit_body(submission)
        doc = self._call(
            "POST", f"/slurm/{self.dialect.version}/job/submit", submission.user, json=body, retry=False
        )  # a retried POST could submit twice; the controller adopts instead
        job_id = doc.get("job_id")
        if not isinstance(job_id, int):
            raise PermanentBackendError(f"slurmrestd accepted the job but returned no job id: {doc!r:.200}")
        return job_id

    def list_jobs(self) -> list[SlurmJob]:
        doc = self._call("GET", f"/slurm/{self.dialect.version}/jobs", self._service_user)
        return self.dialect.parse_jobs(doc)

    def cancel(self, job_id: int, user: str) -> None:
        path = f"/slurm/{self.dialect.version}/job/{int(job_id)}"
        try:
            doc = self._call("DELETE", path, user)
        except PermanentBackendError as e:
            if e.codes and all(n in _JOB_GONE for n in e.codes):
                return
            raise
        errors = [(n, msg) for n, msg in self.dialect.parse_cancel_errors(doc) if n not in _JOB_GONE]
        if errors:
            detail = "; ".join(f"{msg} ({n})" for n, msg in errors)
            raise classify_job_errors(errors)(
                f"slurmrestd DELETE {path} as {user}: {detail}", tuple(n for n, _ in errors)
            )

    def close(self) -> None:
        self._client.close()

    # --- capacity, for the resource daemon ---
    def query_capacity(self, *, refresh_partitions: bool = True) -> CapacitySnapshot:
        """GET /nodes and /jobs on every call: 2 requests. /partitions (limits, partition state) only when
        `refresh_partitions` or when a node names a partition the last listing lacked: then 3."""
        version = self.dialect.version
        doc = self._call("GET", f"/slurm/{version}/nodes", self._service_user)
        reading = parse_nodes_v0038(doc) if version == "v0.0.38" else parse_nodes_v0040(doc)
        if refresh_partitions or self._partitions is None or not partitions_known(reading, self._partitions):
            self._partitions = parse_partitions(
                self._call("GET", f"/slurm/{version}/partitions", self._service_user)
            )
        return build_capacity_snapshot(reading, self._partitions, self.list_jobs())

    # --- plumbing ---
    @property
    def dialect(self) -> Dialect:
        if self._dialect is None:
            doc = self._call("GET", "/openapi/v3", self._service_user)
            self._dialect = DIALECTS[negotiate_version(list(doc.get("paths", {})), self._preferred)]
        return self._dialect

    def _call(self, method: str, path: str, user: str, *, json: Any = None, retry: bool = True) -> Any:
        def once() -> Any:
            return self._request(method, path, user, json)

        if not retry:
            return once()
        return self._retrying(once)

    def _request(self, method: str, path: str, user: str, json: Any) -> Any:
        headers = {"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": self._token_for(user)}
        self.requests += 1
        try:
            resp = self._client.request(method, path, headers=headers, json=json)
        except httpx.TransportError as e:
            raise TransientBackendError(f"slurmrestd {method} {path}: {type(e).__name__}: {e}") from e
        try:
            doc = resp.json()
        except ValueError:
            doc = {}
        errors = parse_errors(doc)
        if resp.status_code < 400 and not errors:
            return doc
        kind = classify(resp.status_code, errors)
        detail = "; ".join(f"{msg} ({n})" for n, msg in errors) or resp.text[:200]
        raise kind(
            f"slurmrestd {method} {path} as {user}: HTTP {resp.status_code}: {detail}",
            tuple(n for n, _ in errors),
        )
