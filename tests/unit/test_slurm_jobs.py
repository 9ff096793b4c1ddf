"""Parsing Slurm's answers into SlurmJob, fed with real output of Slurm 22.05 (tests/data/slurm-22.05)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from converged_bridge.errors import PermanentBackendError
from converged_bridge.slurm.cli import parse_squeue_json
from converged_bridge.slurm.jobs import (
    JobState,
    SlurmJob,
    SlurmParseError,
    index_by_step,
    parse_jobs_v0038,
    parse_jobs_v0040,
    parse_sacct_parsable,
    split_wait_status,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm-22.05"


def load(name: str) -> Any:
    doc = json.loads((DATA / name).read_text())
    return doc["body"] if "http_status" in doc else doc


def by_id(jobs: list[SlurmJob]) -> dict[int, SlurmJob]:
    return {j.job_id: j for j in jobs}


def test_restd_jobs_and_squeue_json_are_one_dialect() -> None:
    assert parse_jobs_v0038(load("squeue.json")) == parse_jobs_v0038(load("squeue.json"))
    restd = by_id(parse_jobs_v0038(load("restd-v0.0.38-jobs.json")))
    squeue = by_id(parse_jobs_v0038(load("squeue.json")))
    assert restd.keys() == squeue.keys()


def test_wait_status_is_split_into_exit_code_and_signal() -> None:
    jobs = by_id(parse_jobs_v0038(load("squeue.json")))
    assert (jobs[10].state, jobs[10].exit_code, jobs[10].signal) == (JobState.COMPLETED, 0, None)
    assert (jobs[11].state, jobs[11].exit_code, jobs[11].reason) == (JobState.FAILED, 3, "NonZeroExitCode")
    assert (jobs[12].exit_code, jobs[12].signal, jobs[12].reason) == (None, 9, "JobLaunchFailure")
    assert split_wait_status(768) == (3, None)
    assert split_wait_status(9) == (None, 9)


def test_running_and_pending_jobs_have_no_exit_code_or_end() -> None:
    jobs = by_id(parse_jobs_v0038(load("squeue.json")))
    running, pending = jobs[14], jobs[16]
    assert running.state is JobState.RUNNING and not running.terminal
    assert running.exit_code is None and running.end_time is None  # squeue's end_time is the expected end
    assert running.start_time == datetime.fromtimestamp(1795326899, tz=UTC)
    assert (pending.state, pending.reason, pending.start_time) == (JobState.PENDING, "Resources", None)
    assert jobs[17].reason == "JobHeldUser" and jobs[18].reason == "Dependency"
    assert jobs[10].reason == ""  # Slurm's "None"


def test_output_path_patterns_are_expanded() -> None:
    jobs = by_id(parse_jobs_v0038(load("squeue.json")))
    assert jobs[10].stdout == "/var/lib/converged-local/shared/capture-10.log"
    assert jobs[3].stdout == "/var/lib/converged-local/shared/slurm-accept-cpu-3.log"


def test_sacct_parsable_keeps_the_exit_code_that_sacct_json_loses() -> None:
    jobs = by_id(parse_sacct_parsable((DATA / "sacct-parsable2.txt").read_text()))
    assert 11 in jobs and "11.batch" not in {str(j) for j in jobs}
    assert (jobs[11].state, jobs[11].exit_code) == (JobState.FAILED, 3)
    assert (jobs[12].exit_code, jobs[12].signal) == (None, 9)
    assert jobs[9].state is JobState.TIMEOUT
    assert jobs[14].state is JobState.CANCELLED  # "CANCELLED by 0"
    assert jobs[10].end_time is not None and jobs[10].nodes == "c1"
    # job 20 was submitted with a comment, but 22.05 keeps comments in accounting only with
    # AccountingStoreFlags=job_comment (unset when this was captured): adoption reads slurmctld first
    assert jobs[20].comment == ""
    assert jobs[9].time_limit_minutes is None  # not requested: parser needs the Timelimit column


def test_jobs_are_found_by_the_step_uid_in_their_comment() -> None:
    jobs = parse_sacct_parsable((DATA / "sacct-parsable2.txt").read_text())
    tagged = [j for j in jobs if j.step_uid]
    assert tagged == [] or all(j.comment.startswith("converged:") for j in tagged)
    a = SlurmJob(job_id=5, name="x", state=JobState.FAILED, comment="converged:uid-1")
    b = SlurmJob(job_id=7, name="x", state=JobState.RUNNING, comment="converged:uid-1")
    c = SlurmJob(job_id=6, name="y", state=JobState.RUNNING, comment="something else")
    assert index_by_step([b, c, a]) == {"uid-1": b}


@pytest.mark.parametrize("doc", [{}, {"jobs": None}, {"jobs": [{"job_state": "RUNNING"}]}])
def test_unexpected_answers_raise_a_parse_error(doc: dict[str, Any]) -> None:
    with pytest.raises(SlurmParseError):
        parse_jobs_v0038(doc)


def test_sacct_without_required_columns_is_refused() -> None:
    with pytest.raises(SlurmParseError, match="ExitCode"):
        parse_sacct_parsable("JobID|State\n1|COMPLETED\n")


# --- Slurm 24.11 (slurmrestd v0.0.40-v0.0.42, squeue --json data_parser v0.0.42) ---
DATA_24 = Path(__file__).resolve().parents[1] / "data" / "slurm-24.11"


def load24(name: str) -> Any:
    doc = json.loads((DATA_24 / name).read_text())
    return doc["body"] if isinstance(doc, dict) and "http_status" in doc else doc


@pytest.mark.parametrize("version", ["v0.0.40", "v0.0.41", "v0.0.42"])
def test_v0040_family_reads_states_exit_codes_and_signals(version: str) -> None:
    jobs = by_id(parse_jobs_v0040(load24(f"restd-{version}-jobs-finished.json")))
    states = {j.state for j in jobs.values()}
    assert JobState.COMPLETED in states and JobState.FAILED in states
    failed = [j for j in jobs.values() if j.state is JobState.FAILED]
    assert {(j.exit_code, j.signal) for j in failed} == {(3, None), (None, 9)}
    assert {j.reason for j in failed} == {"NonZeroExitCode", "RaisedSignal"}
    timed_out = [j for j in jobs.values() if j.state is JobState.TIMEOUT]
    assert timed_out and timed_out[0].time_limit_minutes == 1
    assert all(j.end_time is not None for j in jobs.values() if j.terminal)


@pytest.mark.parametrize("version", ["v0.0.40", "v0.0.41", "v0.0.42"])
def test_v0040_family_pending_and_running_jobs(version: str) -> None:
    jobs = parse_jobs_v0040(load24(f"restd-{version}-jobs.json"))
    pending = [j for j in jobs if j.state is JobState.PENDING]
    running = [j for j in jobs if j.state is JobState.RUNNING]
    assert {j.reason for j in pending} >= {"Resources", "JobHeldUser", "Dependency"}
    assert all(j.start_time is None and j.exit_code is None for j in pending)
    assert running and all(j.start_time is not None and j.end_time is None for j in running)


@pytest.mark.parametrize("version", ["v0.0.40", "v0.0.41", "v0.0.42"])
def test_v0040_family_keeps_the_step_uid_comment(version: str) -> None:
    doc = load24(f"restd-{version}-job-submitted-completed.json")
    (job,) = parse_jobs_v0040(doc)
    assert job.step_uid == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def test_squeue_json_of_24_11_is_read_through_its_data_parser() -> None:
    jobs = parse_squeue_json(load24("squeue.json"))
    assert jobs and {j.state for j in jobs} >= {JobState.RUNNING, JobState.PENDING}


def test_squeue_json_of_an_unknown_dialect_is_refused() -> None:
    with pytest.raises(PermanentBackendError, match=r"v0\.0\.99"):
        parse_squeue_json({"meta": {"plugin": {"data_parser": "data_parser/v0.0.99"}}, "jobs": []})


def test_a_pending_jobs_start_estimate_is_not_its_start_time() -> None:
    # 22.05's squeue puts the backfill scheduler's estimate in start_time for jobs not started yet
    doc = load("squeue-pending-estimates.json")
    assert {j["start_time"] for j in doc["jobs"]} == {0, 1795353840}
    jobs = parse_jobs_v0038(doc)
    assert {j.state for j in jobs} == {JobState.PENDING}
    assert all(j.start_time is None for j in jobs)
    assert {j.reason for j in jobs} == {"", "Resources", "Priority"}
