"""Acceptance of the local cluster's Slurm side: slurmrestd (JWT) runs jobs on the cpu and gpu
partitions, a fake A100 is handed to the job as one GPU, and sacct records both jobs."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

pytestmark = pytest.mark.integration

T = TypeVar("T")
API = "v0.0.38"
TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}


def eventually(what: str, probe: Callable[[], T | None], timeout: float = 90, interval: float = 0.5) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass(frozen=True)
class FinishedJob:
    job_id: int
    record: dict[str, Any]  # the job as GET /slurm/v0.0.38/job/{id} shows it when it ended
    output: Path  # what the job script wrote


@pytest.fixture(scope="module")
def restd(cluster_env: dict[str, str]) -> Iterator[httpx.Client]:
    headers = {"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": cluster_env["SLURM_JWT"]}
    with httpx.Client(base_url=cluster_env["SLURMRESTD_URL"], headers=headers, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def shared(cluster_env: dict[str, str]) -> Path:
    return Path(cluster_env.get("CONVERGED_SHARED_DIR", "/var/lib/converged-local/shared"))


def submit(restd: httpx.Client, script: str, **job: Any) -> int:
    body = {"script": script, "job": {"environment": {"PATH": "/usr/bin:/bin"}, **job}}
    r = restd.post(f"/slurm/{API}/job/submit", json=body)
    assert r.status_code == 200, r.text
    payload = r.json()
    assert not payload.get("errors"), payload["errors"]
    return int(payload["job_id"])


def wait_finished(restd: httpx.Client, job_id: int, timeout: float = 120) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        r = restd.get(f"/slurm/{API}/job/{job_id}")
        if r.status_code != 200:
            return None
        jobs = r.json().get("jobs", [])
        return jobs[0] if jobs and jobs[0].get("job_state") in TERMINAL else None

    return eventually(f"job {job_id} to finish", probe, timeout)


def run_job(restd: httpx.Client, shared: Path, script_body: str, **job: Any) -> FinishedJob:
    output = shared / f"test-local-slurm-{uuid.uuid4().hex[:8]}.out"
    script = f"#!/bin/bash\nset -e\n{{\n{script_body}\n}} > {output}\n"
    job_id = submit(
        restd,
        script,
        current_working_directory=str(shared),
        standard_output=str(shared / f"slurm-{job.get('name', 'job')}-%j.log"),
        **job,
    )
    return FinishedJob(job_id, wait_finished(restd, job_id), output)


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture(scope="module")
def cpu_job(restd: httpx.Client, shared: Path) -> FinishedJob:
    return run_job(
        restd,
        shared,
        'echo "NODE=$SLURMD_NODENAME"\necho "PARTITION=$SLURM_JOB_PARTITION"',
        name="accept-cpu",
        partition="cpu",
        time_limit=5,
    )


@pytest.fixture(scope="module")
def gpu_job(restd: httpx.Client, shared: Path) -> FinishedJob:
    script = (
        'echo "NODE=$SLURMD_NODENAME"\necho "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-}"\n'
        'echo "SLURM_JOB_GPUS=${SLURM_JOB_GPUS-}"'
    )
    return run_job(restd, shared, script, name="accept-gpu", partition="gpu", gres="gpu:a100:1", time_limit=5)


def test_rest_job_runs_on_cpu_partition(cpu_job: FinishedJob) -> None:
    assert cpu_job.record["job_state"] == "COMPLETED", cpu_job.record
    assert cpu_job.record["partition"] == "cpu"
    seen = read_env_file(cpu_job.output)
    assert seen["PARTITION"] == "cpu"
    assert seen["NODE"] in {"c1", "c2"}
    assert cpu_job.record["nodes"] == seen["NODE"]


def test_rest_gpu_job_gets_exactly_one_gpu_on_g1(gpu_job: FinishedJob) -> None:
    assert gpu_job.record["job_state"] == "COMPLETED", gpu_job.record
    assert gpu_job.record["partition"] == "gpu"
    seen = read_env_file(gpu_job.output)
    assert seen["NODE"] == "g1"
    assert len(seen["CUDA_VISIBLE_DEVICES"].split(",")) == 1, seen
    assert seen["CUDA_VISIBLE_DEVICES"] in {"0", "1"}
    assert len(seen["SLURM_JOB_GPUS"].split(",")) == 1, seen


def sacct(cluster_env: dict[str, str], *args: str) -> str:
    env = {**os.environ, "SLURM_CONF": cluster_env["SLURM_CONF"]}
    cp = subprocess.run(["sacct", *args], capture_output=True, text=True, env=env, timeout=60)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def test_sacct_reports_both_jobs_completed(
    cluster_env: dict[str, str], cpu_job: FinishedJob, gpu_job: FinishedJob
) -> None:
    ids = {cpu_job.job_id, gpu_job.job_id}
    id_list = ",".join(map(str, sorted(ids)))

    def recorded() -> dict[int, dict[str, Any]] | None:
        jobs = json.loads(sacct(cluster_env, "--json", "-j", id_list))["jobs"]
        by_id = {int(j["job_id"]): j for j in jobs}
        # slurmdbd may briefly hold a placeholder row (name "allocation", empty partition) when a
        # job's end reaches it before its start: wait for the full record, not just a final state.
        done = ids <= by_id.keys() and all(
            by_id[i]["state"]["current"] in TERMINAL and by_id[i]["partition"] for i in ids
        )
        return by_id if done else None

    by_id = eventually("sacct to record both jobs as finished", recorded, timeout=60)
    for i in ids:
        assert by_id[i]["state"]["current"] == "COMPLETED", by_id[i]["state"]
        assert by_id[i]["exit_code"] == {"status": "SUCCESS", "return_code": 0}
    assert by_id[gpu_job.job_id]["partition"] == "gpu"
    assert by_id[cpu_job.job_id]["partition"] == "cpu"

    # The classic parsable view shows the same, with ExitCode as "code:signal".
    rows = sacct(cluster_env, "-X", "-n", "-P", "-o", "JobID,State,ExitCode", "-j", id_list).splitlines()
    assert sorted(rows) == sorted(f"{i}|COMPLETED|0:0" for i in ids)
