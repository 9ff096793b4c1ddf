"""Both Slurm transports (slurmrestd JWT and the CLI) against the local cluster's real Slurm 22.05.

A step built from the WorkflowStep model is submitted, found by the UID in its comment with one
list query, and its outcome read back: exit code, failure, cancellation, hostile arguments.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.slurm.batch_script import build_batch_options, build_batch_script
from converged_bridge.slurm.cli import CliTransport
from converged_bridge.slurm.jobs import JobState, SlurmJob, index_by_step, parse_sacct_parsable
from converged_bridge.slurm.restd import RestdTransport
from converged_bridge.slurm.transport import SlurmTransport, Submission

pytestmark = pytest.mark.integration


@pytest.fixture(params=["restd", "cli"])
def transport(request: pytest.FixtureRequest, cluster_env: dict[str, str]) -> Iterator[SlurmTransport]:
    t: SlurmTransport
    if request.param == "restd":
        token = cluster_env["SLURM_JWT"]
        t = RestdTransport(cluster_env["SLURMRESTD_URL"], lambda user: token, service_user="root")
    else:
        t = CliTransport()
    yield t
    t.close()


def make_step(command: list[str], **resources: Any) -> tuple[WorkflowStep, str]:
    uid = str(uuid.uuid4())
    step = WorkflowStep.model_validate(
        {
            "metadata": {"name": f"t-{uid[:8]}", "namespace": "default", "uid": uid},
            "spec": {
                "workflow": {"runId": "it", "rule": "transport test", "jobId": 1},
                "backend": "slurm",
                "slurm": {"cluster": "converged", "partition": "cpu"},
                "command": command,
                "resources": {"cpus": 1, "memMiB": 100, "runtimeMinutes": 5, **resources},
            },
        }
    )
    return step, uid


def submit(t: SlurmTransport, shared: Path, step: WorkflowStep, uid: str) -> int:
    cluster = SlurmClusterSpec.model_validate({"transport": "cli", "containerRuntime": "none"})
    logs = str(shared / "transport-logs")
    Path(logs).mkdir(exist_ok=True)
    options = build_batch_options(step, cluster, uid=uid, log_dir=logs)
    script = build_batch_script(step, cluster, uid=uid, log_dir=logs)
    return t.submit(Submission(script=script, options=options, working_dir=str(shared), user="root"))


def wait_terminal(t: SlurmTransport, uid: str, timeout: float = 60) -> SlurmJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = index_by_step(t.list_jobs()).get(uid)
        if job is not None and job.terminal:
            return job
        time.sleep(0.5)
    pytest.fail(f"no terminal job for step {uid} after {timeout}s")


def test_successful_step_is_found_by_its_uid_with_exit_code_0(
    transport: SlurmTransport, cluster_env: dict[str, str]
) -> None:
    shared = Path(cluster_env["CONVERGED_SHARED_DIR"])
    step, uid = make_step(["python3", "-c", "print('hello from slurm')"])
    job_id = submit(transport, shared, step, uid)
    job = wait_terminal(transport, uid)
    assert (job.job_id, job.state, job.exit_code) == (job_id, JobState.COMPLETED, 0)
    assert job.partition == "cpu" and job.name == "transport_test-1"
    assert Path(job.stdout).read_text() == "hello from slurm\n"


def test_failing_step_reports_its_exit_code(transport: SlurmTransport, cluster_env: dict[str, str]) -> None:
    step, uid = make_step(["python3", "-c", "import sys; sys.exit(7)"])
    submit(transport, Path(cluster_env["CONVERGED_SHARED_DIR"]), step, uid)
    job = wait_terminal(transport, uid)
    assert (job.state, job.exit_code, job.reason) == (JobState.FAILED, 7, "NonZeroExitCode")


def test_cancel_ends_a_running_job_and_is_idempotent(
    transport: SlurmTransport, cluster_env: dict[str, str]
) -> None:
    step, uid = make_step(["sleep", "300"])
    job_id = submit(transport, Path(cluster_env["CONVERGED_SHARED_DIR"]), step, uid)
    transport.cancel(job_id, "root")
    job = wait_terminal(transport, uid)
    assert job.state is JobState.CANCELLED
    transport.cancel(job_id, "root")  # already over: no error

    def accounted() -> list[SlurmJob]:  # slurmdbd records the job a moment after slurmctld ends it
        out = subprocess.run(
            ["sacct", "-P", "-j", str(job_id), "-o", "JobID,State,ExitCode"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [j for j in parse_sacct_parsable(out) if j.terminal]

    deadline = time.monotonic() + 30
    while not (rows := accounted()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rows and rows[0].state is JobState.CANCELLED


def test_hostile_arguments_reach_the_job_verbatim(
    transport: SlurmTransport, cluster_env: dict[str, str]
) -> None:
    shared = Path(cluster_env["CONVERGED_SHARED_DIR"])
    marker = shared / f"pwned-{uuid.uuid4().hex[:8]}"
    hostile = [f"$(touch {marker})", f"`touch {marker}`", "a\nb", f"'; touch {marker}; '", "ünïcødé ✓", "*"]
    step, uid = make_step(["python3", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *hostile])
    submit(transport, shared, step, uid)
    job = wait_terminal(transport, uid)
    assert job.exit_code == 0
    assert json.loads(Path(job.stdout).read_text()) == hostile
    assert not marker.exists()


def test_one_list_query_serves_every_job(cluster_env: dict[str, str]) -> None:
    token = cluster_env["SLURM_JWT"]
    restd = RestdTransport(cluster_env["SLURMRESTD_URL"], lambda user: token, service_user="root")
    shared = Path(cluster_env["CONVERGED_SHARED_DIR"])
    uids = []
    for _ in range(5):
        step, uid = make_step(["true"])
        submit(restd, shared, step, uid)
        uids.append(uid)
    before = restd.requests
    found = index_by_step(restd.list_jobs())
    assert restd.requests - before == 1
    assert set(uids) <= found.keys()
    restd.close()
