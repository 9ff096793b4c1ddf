"""Drive converged's own RestdTransport against the Slurm 26.05.5 rig and save what it sent and got.

Run as root from the repository root, with the rig freshly up (`capture.sh --up-only`, job ids from 1):
    .venv/bin/python tests/data/slurm-26.05/capture_converged.py

converged speaks v0.0.42 (its `DIALECTS` stop there). v0.0.43, v0.0.44 and v0.0.45 are driven with the
v0.0.42 dialect registered under their names (build_submit_body_v0040, parse_jobs_v0040,
parse_cancel_errors_v0042) — in this script only — to check whether that dialect holds unchanged.

For each of v0.0.42, v0.0.43, v0.0.44, v0.0.45 (in that order) it submits, through `RestdTransport.submit`, a
plain step and a GPU step built from the WorkflowStep model exactly as the bridge builds them, checks
the job slurmctld records, finds it with `list_jobs()` by its UID, runs a failing step (exit 3) and
cancels a running one twice, an unknown one, and
one as the wrong user. It exits non-zero at the first check that fails. Files written here:
- `converged-submit-steps.json`: the inputs (step manifest, cluster spec, log dir, cwd, user) per
  `<version>-<variant>`, so unit tests can rebuild each Submission;
- `converged-submit-<version>-<variant>-{request,response}.json`: the POST job/submit body as sent and
  the answer as served; `converged-submit-<version>-<variant>-job.json`: `GET /slurm/<v>/job/<id>`
  once the job completed;
- `converged-<version>-cancel-{finished,unknown,denied}.json`: the DELETE answers for the already
  cancelled job, for job 999999, and for a running root job cancelled as `nobody`.
Answers other than HTTP 200 are wrapped as `{"http_status": N, "body": ...}`. No header is stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.errors import PermanentBackendError
from converged_bridge.slurm.batch_script import build_batch_options, build_batch_script
from converged_bridge.slurm.jobs import JobState, SlurmJob, index_by_step, parse_jobs_v0040
from converged_bridge.slurm.restd import (
    DIALECTS,
    Dialect,
    RestdTransport,
    build_submit_body_v0040,
    parse_cancel_errors_v0042,
)
from converged_bridge.slurm.transport import Submission

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("CAPTURE_ROOT", "/var/lib/converged-capture/sid"))
IN_CHROOT = ["chroot", str(ROOT), "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
URL = "http://127.0.0.1:26820"
SHARED = "/var/lib/capture/shared"  # as slurmd sees it, inside the chroot
LOG_DIR = f"{SHARED}/converged-logs"
VERSIONS = ("v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45")
SLURM_RELEASE = "26.05.5"
for _v in VERSIONS:  # the experiment: the v0.0.42 dialect under the newer names
    DIALECTS.setdefault(_v, Dialect(_v, build_submit_body_v0040, parse_jobs_v0040, parse_cancel_errors_v0042))
CLUSTER_SPEC = {"transport": "cli", "containerRuntime": "none"}  # as the integration tests build it
REPORT = "echo converged-capture; echo CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"


def token_for(user: str) -> str:
    out = subprocess.run(
        [*IN_CHROOT, "scontrol", "token", f"username={user}", "lifespan=900"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().removeprefix("SLURM_JWT=")


class Recorder:
    """Every exchange of the transport's httpx client: (method, path, request body, status, answer)."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[str, str, Any, int, Any]] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        req = response.request
        body = json.loads(req.content) if req.content else None
        try:
            answer = response.json()
        except ValueError:
            answer = response.text
        self.exchanges.append((req.method, req.url.path, body, response.status_code, answer))

    def last(self, method: str, path: str) -> tuple[Any, int, Any]:
        for m, p, body, status, answer in reversed(self.exchanges):
            if (m, p) == (method, path):
                return body, status, answer
        raise AssertionError(f"no {method} {path} recorded")


def manifest(uid: str, rule: str, command: list[str], **resources: Any) -> dict[str, Any]:
    partition = "gpu" if resources.get("gpus") else "cpu"
    return {
        "metadata": {"name": f"capture-{uid[:8]}", "namespace": "default", "uid": uid},
        "spec": {
            "workflow": {"runId": "capture", "rule": rule, "jobId": 1},
            "backend": "slurm",
            "slurm": {"cluster": "capture26", "partition": partition, "account": "default"},
            "command": command,
            "resources": {"nodes": 1, "tasks": 1, "cpus": 2, "memMiB": 300, "runtimeMinutes": 7, **resources},
        },
    }


def submission(inputs: dict[str, Any]) -> Submission:
    step = WorkflowStep.model_validate(inputs["step"])
    cluster = SlurmClusterSpec.model_validate(inputs["cluster"])
    uid, log_dir = inputs["step"]["metadata"]["uid"], inputs["log_dir"]
    return Submission(
        script=build_batch_script(step, cluster, uid=uid, log_dir=log_dir),
        options=build_batch_options(step, cluster, uid=uid, log_dir=log_dir),
        working_dir=inputs["working_dir"],
        user=inputs["user"],
    )


def wait_for(t: RestdTransport, uid: str, done: bool = True, timeout: float = 90) -> SlurmJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = index_by_step(t.list_jobs()).get(uid)
        if job is not None and (job.terminal if done else job.state is JobState.RUNNING):
            return job
        time.sleep(0.5)
    raise AssertionError(f"step {uid}: not {'terminal' if done else 'running'} after {timeout}s")


def check(what: str, got: Any, want: Any) -> None:
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")
    print(f"  ok {what} = {got!r}")


def save(name: str, status: int, body: Any) -> None:
    doc = body if status == 200 else {"http_status": status, "body": body}
    (HERE / name).write_text(json.dumps(doc, indent=2) + "\n")


def number(value: Any) -> Any:
    return value.get("number") if isinstance(value, dict) and value.get("set") else None


def capture_version(v: str, tokens: dict[str, str], steps: dict[str, Any]) -> None:
    rec = Recorder()
    client = httpx.Client(base_url=URL, timeout=15, event_hooks={"response": [rec]})
    t = RestdTransport(URL, tokens.__getitem__, service_user="root", api_version=v, client=client)
    token = tokens["root"]
    print(f"== {v}")
    check("server_version()", t.server_version(), SLURM_RELEASE)

    for variant, extra in (("plain", {}), ("gpu", {"gpus": 1, "gpuModel": "a100"})):
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"converged-capture-26.05/{v}/{variant}"))
        inputs = {
            "step": manifest(uid, f"capture {variant}", ["/bin/sh", "-c", REPORT], **extra),
            "cluster": CLUSTER_SPEC,
            "log_dir": LOG_DIR,
            "working_dir": SHARED,
            "user": "root",
        }
        steps[f"{v}-{variant}"] = inputs
        job_id = t.submit(submission(inputs))
        body, status, answer = rec.last("POST", f"/slurm/{v}/job/submit")
        check(f"{variant} submit warnings", answer.get("warnings"), [])
        save(f"converged-submit-{v}-{variant}-request.json", 200, body)
        save(f"converged-submit-{v}-{variant}-response.json", status, answer)
        job = wait_for(t, uid)
        check(
            f"{variant} list_jobs() by uid",
            (job.job_id, job.state, job.exit_code),
            (job_id, JobState.COMPLETED, 0),
        )
        resp = client.get(
            f"/slurm/{v}/job/{job_id}", headers={"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": token}
        )
        save(f"converged-submit-{v}-{variant}-job.json", resp.status_code, resp.json())
        (rec_job,) = resp.json()["jobs"]
        gres = "gres/gpu:a100:1" if extra else ""
        check(f"{variant} job name", rec_job["name"], f"capture_{variant}-1")
        check(f"{variant} job comment", rec_job["comment"], f"converged:{uid}")
        check(f"{variant} job time_limit", number(rec_job["time_limit"]), 7)
        check(f"{variant} job memory_per_node", number(rec_job["memory_per_node"]), 300)
        check(f"{variant} job cpus_per_task", number(rec_job["cpus_per_task"]), 2)
        check(f"{variant} job cpus", number(rec_job["cpus"]), 2)
        check(f"{variant} job tres_per_node", rec_job.get("tres_per_node", ""), gres)
        check(f"{variant} job partition", rec_job["partition"], "gpu" if extra else "cpu")
        check(f"{variant} job account", rec_job["account"], "default")
        out = (ROOT / job.stdout.lstrip("/")).read_text()
        check(
            f"{variant} job output",
            out,
            f"converged-capture\nCUDA_VISIBLE_DEVICES={'0' if extra else 'unset'}\n",
        )

    uid = str(uuid.uuid4())
    inputs = {**steps[f"{v}-plain"], "step": manifest(uid, "capture fail", ["/bin/sh", "-c", "exit 3"])}
    t.submit(submission(inputs))
    job = wait_for(t, uid)
    check("failing step", (job.state, job.exit_code, job.reason), (JobState.FAILED, 3, "NonZeroExitCode"))

    uid = str(uuid.uuid4())
    inputs = {**steps[f"{v}-plain"], "step": manifest(uid, "capture cancel", ["sleep", "300"])}
    job_id = t.submit(submission(inputs))
    wait_for(t, uid, done=False)
    t.cancel(job_id, "root")
    check("cancelled", wait_for(t, uid).state, JobState.CANCELLED)
    t.cancel(job_id, "root")  # idempotent: must not raise
    _, status, answer = rec.last("DELETE", f"/slurm/{v}/job/{job_id}")
    save(f"converged-{v}-cancel-finished.json", status, answer)
    print(f"  ok second cancel: HTTP {status}, errors {answer.get('errors')}, status {answer.get('status')}")

    t.cancel(999999, "root")  # unknown job: must not raise either
    _, status, answer = rec.last("DELETE", f"/slurm/{v}/job/999999")
    save(f"converged-{v}-cancel-unknown.json", status, answer)
    print(f"  ok cancel of an unknown job: HTTP {status}, errors {answer.get('errors')}")

    # Cancelling someone else's job: refused in `status` (HTTP 200); 24.11 said so from v0.0.42 on.
    uid = str(uuid.uuid4())
    inputs = {**steps[f"{v}-plain"], "step": manifest(uid, "capture denied", ["sleep", "300"])}
    job_id = t.submit(submission(inputs))
    try:
        t.cancel(job_id, "nobody")
        refused = None
    except PermanentBackendError as e:
        refused = e.codes
    _, status, answer = rec.last("DELETE", f"/slurm/{v}/job/{job_id}")
    save(f"converged-{v}-cancel-denied.json", status, answer)
    check("cancel as another user: refusal reported", refused, (2002,) if v >= "v0.0.42" else None)
    time.sleep(1)
    check("cancel as another user: job still there", index_by_step(t.list_jobs())[uid].terminal, False)
    t.cancel(job_id, "root")
    t.close()


def main() -> int:
    (ROOT / LOG_DIR.lstrip("/")).mkdir(exist_ok=True)  # the jobs run as root
    tokens = {user: token_for(user) for user in ("root", "nobody")}
    steps: dict[str, Any] = {}
    for v in VERSIONS:
        capture_version(v, tokens, steps)
    (HERE / "converged-submit-steps.json").write_text(json.dumps(steps, indent=2) + "\n")
    leaked = [p.name for p in HERE.glob("converged-*.json") if "eyJ" in p.read_text()]
    if leaked:
        raise AssertionError(f"a JWT ended up in {leaked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
