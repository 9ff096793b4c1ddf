"""Slurm 26.05: the slurmrestd dialects v0.0.43-v0.0.45 (and v0.0.42 as 26.05 serves it), fed with what
slurmrestd 26.05.5 sent and answered (`tests/data/slurm-26.05`, README there).

`converged-*` files are RestdTransport's own exchanges (made by `capture_converged.py`, which drove
v0.0.43-45 with the v0.0.42 dialect: the dialects converged now registers for them are checked here to
build the very bodies that server accepted); the rest are the rig's captures of the same cluster.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from converged_bridge.api.slurmcluster import PartitionState
from converged_bridge.errors import PermanentBackendError
from converged_bridge.slurm.capacity import (
    build_capacity_snapshot,
    parse_nodes_v0040,
    parse_partitions,
    parse_sinfo_json,
)
from converged_bridge.slurm.cli import parse_squeue_json
from converged_bridge.slurm.jobs import JobState, parse_jobs_v0040
from converged_bridge.slurm.restd import DIALECTS, classify, negotiate_version, parse_errors
from tests.unit.restd_captures import DATA, Captures, read

D26 = DATA / "slurm-26.05"
NEW = ("v0.0.43", "v0.0.44", "v0.0.45")
SERVED = ("v0.0.42", *NEW)  # every data parser 26.05 ships
CAPTURED = [f"{v}-{variant}" for v in SERVED for variant in ("plain", "gpu")]
# the job each version's converged capture cancelled twice, and the one it was refused (README table)
CANCELLED = {"v0.0.42": 4, "v0.0.43": 9, "v0.0.44": 14, "v0.0.45": 19}
DENIED = {v: n + 1 for v, n in CANCELLED.items()}


CAPTURED_26 = Captures(D26)
body = CAPTURED_26.body
captured_submission = CAPTURED_26.submission
transport = CAPTURED_26.transport


# --- negotiation ---


def test_negotiation_picks_v0045_on_26_05() -> None:
    paths = list(json.loads((D26 / "restd-openapi-v3.json").read_text())["paths"])
    assert negotiate_version(paths) == "v0.0.45"
    for version in SERVED:
        assert negotiate_version(paths, version) == version
    with pytest.raises(PermanentBackendError, match=r"does not serve v0\.0\.38"):
        negotiate_version(paths, "v0.0.38")


def test_a_transport_speaks_v0045_to_26_05_unasked() -> None:
    t = transport({("GET", "/slurm/v0.0.45/ping"): D26 / "restd-v0.0.45-ping.json"})
    assert t.server_version() == "26.05.5"
    assert t.dialect.version == "v0.0.45"


# --- submit ---


@pytest.mark.parametrize("key", CAPTURED)
def test_submit_body_is_what_slurmrestd_26_05_accepted(key: str) -> None:
    version = key.split("-")[0]
    sent = body(f"converged-submit-{key}-request.json")
    assert DIALECTS[version].build_submit_body(captured_submission(key)) == sent


@pytest.mark.parametrize("key", CAPTURED)
def test_submit_body_uses_only_fields_26_05_declares(key: str) -> None:
    version = key.split("-")[0]
    schemas = json.loads((D26 / "restd-openapi-v3.json").read_text())["components"]["schemas"]
    declared = schemas[f"{version}_job_desc_msg"]["properties"].keys()
    assert DIALECTS[version].build_submit_body(captured_submission(key))["job"].keys() <= declared


@pytest.mark.parametrize("version", NEW)
def test_submit_returns_the_job_id_26_05_answered(version: str) -> None:
    answer = D26 / f"converged-submit-{version}-gpu-response.json"
    t = transport({("POST", f"/slurm/{version}/job/submit"): answer}, version)
    assert t.submit(captured_submission(f"{version}-gpu")) == body(answer.name)["job_id"]


@pytest.mark.parametrize("version", NEW)
@pytest.mark.parametrize(
    ("name", "status", "codes"),
    [
        ("job-submit-error-unknown-partition", 422, [2000]),
        ("job-submit-no-environment", 422, [2127]),
        ("job-unknown-error", 404, [2017]),
        ("error-bad-token", 511, [1007]),
    ],
)
def test_26_05_errors_are_permanent(version: str, name: str, status: int, codes: list[int]) -> None:
    """26.05 refuses a submission with HTTP 422 (24.11: 500); none of these may be retried."""
    got_status, doc = read(D26 / f"restd-{version}-{name}.json")
    errors = parse_errors(doc)
    assert (got_status, [n for n, _ in errors]) == (status, codes)
    assert classify(got_status, errors) is PermanentBackendError


def test_a_refused_submit_raises_with_slurms_reason() -> None:
    answer = D26 / "restd-v0.0.44-job-submit-error-unknown-partition.json"
    t = transport({("POST", "/slurm/v0.0.44/job/submit"): answer}, "v0.0.44")
    with pytest.raises(PermanentBackendError, match=r"HTTP 422: Invalid partition name specified") as e:
        t.submit(captured_submission("v0.0.44-plain"))
    assert e.value.codes == (2000,)


# --- job records ---


@pytest.mark.parametrize("key", CAPTURED)
def test_reads_the_job_slurmctld_recorded_for_a_converged_submit(key: str) -> None:
    variant = key.split("-")[1]
    inputs = json.loads((D26 / "converged-submit-steps.json").read_text())[key]
    uid = inputs["step"]["metadata"]["uid"]
    job_id = body(f"converged-submit-{key}-response.json")["job_id"]
    (job,) = DIALECTS[key.split("-")[0]].parse_jobs(body(f"converged-submit-{key}-job.json"))
    log = f"{inputs['log_dir']}/converged-{uid}.log"
    assert (job.job_id, job.name, job.step_uid, job.user) == (job_id, f"capture_{variant}-1", uid, "root")
    assert (job.state, job.exit_code, job.signal, job.reason) == (JobState.COMPLETED, 0, None, "")
    assert (job.partition, job.time_limit_minutes) == ("gpu" if variant == "gpu" else "cpu", 7)
    assert (job.stdout, job.stderr) == (log, log)


@pytest.mark.parametrize("version", NEW)
def test_every_dialect_reads_the_same_jobs_as_v0042(version: str) -> None:
    """v0.0.43+ send the raw pattern (`capture-%j.log`) in standard_output and the path in
    stdout_expanded; the SlurmJobs must not tell the versions apart."""
    old = parse_jobs_v0040(body("restd-v0.0.42-jobs-finished.json"))
    new = DIALECTS[version].parse_jobs(body(f"restd-{version}-jobs-finished.json"))
    assert new == old
    raw = {j["job_id"]: j["standard_output"] for j in body(f"restd-{version}-jobs-finished.json")["jobs"]}
    assert raw[1].endswith("capture-%j.log")
    assert {j.job_id: j.stdout for j in new}[1].endswith("capture-1.log")


@pytest.mark.parametrize("version", SERVED)
def test_exit_codes_signals_and_reasons_of_26_05(version: str) -> None:
    jobs = {j.job_id: j for j in DIALECTS[version].parse_jobs(body(f"restd-{version}-jobs-finished.json"))}
    assert (jobs[2].state, jobs[2].exit_code) == (JobState.COMPLETED, 0)
    assert (jobs[3].state, jobs[3].exit_code, jobs[3].reason) == (JobState.FAILED, 3, "NonZeroExitCode")
    assert (jobs[4].state, jobs[4].signal, jobs[4].reason) == (JobState.FAILED, 9, "RaisedSignal")
    assert jobs[1].state == JobState.TIMEOUT
    assert jobs[8].nodes == "c[2-3]"


@pytest.mark.parametrize("version", NEW)
def test_pending_job_reason_of_26_05(version: str) -> None:
    (job,) = DIALECTS[version].parse_jobs(body(f"restd-{version}-job-pending.json"))
    assert (job.state, job.reason, job.start_time) == (JobState.PENDING, "Resources", None)
    assert job.stdout.endswith("capture-10.log")


# --- cancel ---


@pytest.mark.parametrize("version", SERVED)
@pytest.mark.parametrize("case", ["finished", "unknown"])
def test_cancelling_a_finished_or_unknown_job_is_not_an_error(version: str, case: str) -> None:
    job_id = 999999 if case == "unknown" else CANCELLED[version]
    answer = D26 / f"converged-{version}-cancel-{case}.json"
    transport({("DELETE", f"/slurm/{version}/job/{job_id}"): answer}, version).cancel(job_id, "root")


@pytest.mark.parametrize("version", NEW)
def test_a_refused_cancel_is_reported_with_http_200(version: str) -> None:
    job_id = DENIED[version]
    answer = D26 / f"converged-{version}-cancel-denied.json"
    t = transport({("DELETE", f"/slurm/{version}/job/{job_id}"): answer}, version)
    with pytest.raises(PermanentBackendError, match="Access/permission denied") as e:
        t.cancel(job_id, "nobody")
    assert e.value.codes == (2002,)


# --- capacity ---


@pytest.mark.parametrize("version", SERVED)
def test_capacity_of_26_05_is_the_same_in_every_dialect(version: str) -> None:
    def snapshot(v: str) -> Any:
        reading = parse_nodes_v0040(body(f"restd-{v}-nodes.json"))
        jobs = DIALECTS[v].parse_jobs(body(f"restd-{v}-jobs.json"))
        return build_capacity_snapshot(reading, parse_partitions(body(f"restd-{v}-partitions.json")), jobs)

    snap = snapshot(version)
    assert snap.partitions == snapshot("v0.0.42").partitions
    assert (snap.slurm_version, snap.source) == ("26.05.5", f"data_parser/{version}")
    cpu, gpu = snap.partition("cpu"), snap.partition("gpu")
    assert cpu is not None and gpu is not None
    assert (cpu.state, cpu.max_time_minutes, cpu.total.nodes, cpu.total.cpus) == (
        PartitionState.UP,
        1440,
        3,
        12,
    )
    assert (gpu.max_time_minutes, dict(gpu.total.gpus)) == (720, {"a100": 2})


def test_the_transport_queries_capacity_in_v0045() -> None:
    t = transport(
        {
            ("GET", f"/slurm/v0.0.45/{what}"): D26 / f"restd-v0.0.45-{what}.json"
            for what in ("nodes", "partitions", "jobs")
        }
    )
    snap = t.query_capacity()
    assert [p.name for p in snap.partitions] == ["cpu", "gpu"] and t.requests == 4  # with /openapi/v3


# --- the CLI's JSON: v0.0.45 by default ---


def test_squeue_json_of_26_05_is_read_in_its_default_v0045() -> None:
    default, old = body("squeue.json"), body("squeue-v0.0.42.json")
    assert default["meta"]["plugin"]["data_parser"] == "data_parser/v0.0.45"
    assert parse_squeue_json(default) == parse_squeue_json(old)
    assert {j.state for j in parse_squeue_json(default)} == {JobState.RUNNING, JobState.PENDING}


def test_squeue_json_lists_finished_jobs_only_when_asked_for_every_state() -> None:
    """The CLI transport finds a finished job only in `squeue --json --states=all` on 23.11+."""
    assert parse_squeue_json(body("squeue-finished.json")) == []
    jobs = parse_squeue_json(body("squeue-states-all.json"))
    assert {j.state for j in jobs} == {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}
    failed = [j for j in jobs if j.state is JobState.FAILED]
    assert failed and all((j.exit_code, j.reason, j.user) == (7, "NonZeroExitCode", "bob") for j in failed)
    assert all(j.step_uid and j.end_time and j.stdout.endswith(f"converged-{j.step_uid}.log") for j in jobs)


def test_sinfo_json_of_26_05_gives_the_capacity_restd_gives() -> None:
    for name in ("sinfo.json", "sinfo-v0.0.42.json"):
        reading = parse_sinfo_json(body(name))
        snap = build_capacity_snapshot(reading, (), parse_squeue_json(body("squeue.json")))
        restd = build_capacity_snapshot(
            parse_nodes_v0040(body("restd-v0.0.45-nodes.json")),
            parse_partitions(body("restd-v0.0.45-partitions.json")),
            parse_jobs_v0040(body("restd-v0.0.45-jobs.json")),
        )
        assert [(p.name, p.total, p.max_time_minutes) for p in snap.partitions] == [
            (p.name, p.total, p.max_time_minutes) for p in restd.partitions
        ], name
