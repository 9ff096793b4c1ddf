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
from converged_bridge.slurm.jobs import SlurmJob, parse_jobs_v0038, parse_jobs_v0040
from converged_bridge.slurm.transport import Submission

# Slurm error numbers that mean "try again": communication with slurmctld (1000-1999), socket and
# protocol errors (5000-5999), and slurmctld being busy or in a reconfiguration.
_TRANSIENT_ERRORS = (
    frozenset({-1, 2051, 2052, 2053}) | frozenset(range(1000, 2000)) | frozenset(range(5000, 6000))
)
_JOB_GONE = frozenset({2017, 2020, 2021})  # invalid job id, already done, already completing


@dataclass(frozen=True)
class Dialect:
    version: str
    build_submit_body: Callable[[Submission], dict[str, Any]]
    parse_jobs: Callable[[Mapping[str, Any]], list[SlurmJob]]


def build_submit_body_v0038(sub: Submission) -> dict[str, Any]:
    """v0.0.38 job/submit body. The script's #SBATCH lines are not read by slurmrestd: all options go here."""
    o: BatchOptions = sub.options
    job: dict[str, Any] = {
        "name": o.job_name,
        "comment": o.comment,
        "standard_output": o.output,
        "standard_error": o.error,
        "current_working_directory": sub.working_dir,
        "nodes": [o.nodes, o.nodes],
        "tasks": o.ntasks,
        "cpus_per_task": o.cpus_per_task,
        # --export=NONE: the job starts from a clean environment (the script sets what the step needs)
        "environment": {"PATH": "/usr/local/bin:/usr/bin:/bin"},
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
    """v0.0.40-v0.0.42 job/submit body: like v0.0.38, but `environment` is a list of "K=V" strings."""
    body = build_submit_body_v0038(sub)
    job = body["job"]
    job["environment"] = [f"{k}={v}" for k, v in job["environment"].items()]
    nodes = job.pop("nodes")
    job["minimum_nodes"], job["maximum_nodes"] = nodes
    if "memory_per_node" in job:
        job["memory_per_node"] = {"set": True, "number": job["memory_per_node"]}
    if "time_limit" in job:
        job["time_limit"] = {"set": True, "number": job["time_limit"]}
    return body


DIALECTS: dict[str, Dialect] = {
    "v0.0.38": Dialect("v0.0.38", build_submit_body_v0038, parse_jobs_v0038),
    **{v: Dialect(v, build_submit_body_v0040, parse_jobs_v0040) for v in ("v0.0.40", "v0.0.41", "v0.0.42")},
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
    if status >= 500 and (not errors or all(n in _TRANSIENT_ERRORS for n, _ in errors)):
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
        try:
            self._call("DELETE", f"/slurm/{self.dialect.version}/job/{int(job_id)}", user)
        except PermanentBackendError as e:
            if e.codes and all(n in _JOB_GONE for n in e.codes):
                return
            raise

    def close(self) -> None:
        self._client.close()

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
