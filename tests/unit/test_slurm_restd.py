"""The slurmrestd dialects, fed with what real slurmrestd servers sent and answered.

`tests/data/slurm-24.11/converged-*` are RestdTransport's own exchanges with slurmrestd 24.11.5
(made by `capture_converged.py` there); the other files are the 22.05 and 24.11 captures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from converged_bridge.errors import PermanentBackendError, TransientBackendError
from converged_bridge.slurm.jobs import JobState, parse_jobs_v0040
from converged_bridge.slurm.restd import (
    DIALECTS,
    RestdTransport,
    build_submit_body_v0038,
    build_submit_body_v0040,
    classify,
    classify_job_errors,
    negotiate_version,
    parse_errors,
)
from tests.unit.restd_captures import DATA, Captures, read

DATA24 = DATA / "slurm-24.11"
VERSIONS = ("v0.0.40", "v0.0.41", "v0.0.42")
CAPTURED = [f"{v}-{variant}" for v in VERSIONS for variant in ("plain", "gpu")]


CAPTURED_24 = Captures(DATA24)
body = CAPTURED_24.body
captured_submission = CAPTURED_24.submission


def transport(version: str, routes: dict[tuple[str, str], Path]) -> RestdTransport:
    return CAPTURED_24.transport(routes, version)


# --- submit bodies ---


@pytest.mark.parametrize("key", CAPTURED)
def test_v0040_submit_body_is_what_slurmrestd_24_11_accepted(key: str) -> None:
    sent = body(f"converged-submit-{key}-request.json")
    assert build_submit_body_v0040(captured_submission(key)) == sent


@pytest.mark.parametrize("version", VERSIONS)
def test_v0040_gpus_are_a_per_node_tres_not_gres(version: str) -> None:
    """24.11 has no `gres` job field: v0.0.40/41 warn and ignore it, v0.0.42 ignores it silently."""
    job = build_submit_body_v0040(captured_submission(f"{version}-gpu"))["job"]
    assert "gres" not in job
    assert job["tres_per_node"] == "gres/gpu:a100:1"
    (record,) = body(f"converged-submit-{version}-gpu-job.json")["jobs"]
    assert record["tres_per_node"] == "gres/gpu:a100:1"
    assert "gres/gpu:a100=1" in record["tres_req_str"]


@pytest.mark.parametrize("key", CAPTURED)
def test_v0040_submit_body_uses_only_fields_the_server_declares(key: str) -> None:
    version = key.split("-")[0]
    schemas = json.loads((DATA24 / "restd-openapi-v3.json").read_text())["components"]["schemas"]
    declared = schemas[f"{version}_job_desc_msg"]["properties"].keys()
    assert build_submit_body_v0040(captured_submission(key))["job"].keys() <= declared


def test_v0038_submit_body_uses_only_fields_slurm_22_05_declares() -> None:
    schemas = json.loads((DATA / "slurm-22.05" / "restd-openapi-v3.json").read_text())["components"][
        "schemas"
    ]
    declared = schemas["v0.0.38_job_properties"]["properties"].keys()
    job = build_submit_body_v0038(captured_submission("v0.0.40-gpu"))["job"]
    # the node count as "min-max": 22.05 ignores the documented [min, max] array (one node, whatever asked)
    assert job["gres"] == "gpu:a100:1" and job["nodes"] == "1-1"
    assert job.keys() <= declared


# --- job records ---


@pytest.mark.parametrize("key", CAPTURED)
def test_v0040_reads_the_job_slurmctld_recorded_for_a_converged_submit(key: str) -> None:
    variant = key.split("-")[1]
    inputs = json.loads((DATA24 / "converged-submit-steps.json").read_text())[key]
    uid = inputs["step"]["metadata"]["uid"]
    job_id = body(f"converged-submit-{key}-response.json")["job_id"]
    (job,) = parse_jobs_v0040(body(f"converged-submit-{key}-job.json"))
    log = f"{inputs['log_dir']}/converged-{uid}.log"
    assert (job.job_id, job.name, job.step_uid, job.user) == (job_id, f"capture_{variant}-1", uid, "root")
    assert (job.state, job.exit_code, job.signal, job.reason) == (JobState.COMPLETED, 0, None, "")
    assert (job.partition, job.time_limit_minutes) == ("gpu" if variant == "gpu" else "cpu", 7)
    assert (job.stdout, job.stderr) == (log, log)
    assert job.submit_time and job.start_time and job.end_time and job.start_time <= job.end_time


# --- version negotiation ---


def openapi_paths(release: str) -> list[str]:
    return list(json.loads((DATA / release / "restd-openapi-v3.json").read_text())["paths"])


def test_negotiation_picks_the_newest_version_24_11_serves() -> None:
    assert negotiate_version(openapi_paths("slurm-24.11")) == "v0.0.42"
    assert negotiate_version(openapi_paths("slurm-24.11"), "v0.0.40") == "v0.0.40"


def test_negotiation_picks_v0038_on_22_05() -> None:
    assert negotiate_version(openapi_paths("slurm-22.05")) == "v0.0.38"
    with pytest.raises(PermanentBackendError, match=r"does not serve v0\.0\.42"):
        negotiate_version(openapi_paths("slurm-22.05"), "v0.0.42")


# --- errors ---


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("name", "status", "codes"),
    [
        ("job-unknown-error", 404, [2017]),
        ("error-bad-token", 511, [1007]),
        ("job-submit-error-unknown-partition", 500, [2000]),
    ],
)
def test_24_11_errors_are_permanent(version: str, name: str, status: int, codes: list[int]) -> None:
    got_status, doc = read(DATA24 / f"restd-{version}-{name}.json")
    errors = parse_errors(doc)
    assert (got_status, [n for n, _ in errors]) == (status, codes)
    assert classify(got_status, errors) is PermanentBackendError


def test_unreachable_or_busy_slurmctld_is_transient() -> None:
    assert classify(503, []) is TransientBackendError
    assert classify(500, [(1001, "Unable to contact slurm controller")]) is TransientBackendError
    assert classify(500, []) is TransientBackendError
    assert classify_job_errors([(1001, "Unable to contact slurm controller")]) is TransientBackendError
    assert classify_job_errors([(2002, "Access/permission denied")]) is PermanentBackendError


# --- the transport on captured answers ---


@pytest.mark.parametrize("key", ["v0.0.40-plain", "v0.0.42-gpu"])
def test_submit_returns_the_job_id_of_the_captured_answer(key: str) -> None:
    version = key.split("-")[0]
    path = f"/slurm/{version}/job/submit"
    t = transport(version, {("POST", path): DATA24 / f"converged-submit-{key}-response.json"})
    assert t.submit(captured_submission(key)) == body(f"converged-submit-{key}-response.json")["job_id"]


def test_server_version_is_the_release_string() -> None:
    t = transport("v0.0.42", {("GET", "/slurm/v0.0.42/ping"): DATA24 / "restd-v0.0.42-ping.json"})
    assert t.server_version() == "24.11.5"


def test_submit_to_an_unknown_partition_is_a_permanent_error_with_its_code() -> None:
    path = "/slurm/v0.0.41/job/submit"
    t = transport(
        "v0.0.41", {("POST", path): DATA24 / "restd-v0.0.41-job-submit-error-unknown-partition.json"}
    )
    with pytest.raises(PermanentBackendError, match="Invalid partition name") as e:
        t.submit(captured_submission("v0.0.41-plain"))
    assert e.value.codes == (2000,)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", ["finished", "unknown"])
def test_cancelling_a_finished_or_unknown_job_is_not_an_error(version: str, case: str) -> None:
    answer = DATA24 / f"converged-{version}-cancel-{case}.json"
    job_id = 999999 if case == "unknown" else {"v0.0.40": 4, "v0.0.41": 9, "v0.0.42": 14}[version]
    t = transport(version, {("DELETE", f"/slurm/{version}/job/{job_id}"): answer})
    t.cancel(job_id, "root")


def test_v0042_reports_a_refused_cancel_with_http_200() -> None:
    t = transport(
        "v0.0.42", {("DELETE", "/slurm/v0.0.42/job/15"): DATA24 / "converged-v0.0.42-cancel-denied.json"}
    )
    with pytest.raises(PermanentBackendError, match="Access/permission denied") as e:
        t.cancel(15, "nobody")
    assert e.value.codes == (2002,)


@pytest.mark.parametrize("version", ["v0.0.40", "v0.0.41"])
def test_v0040_and_v0041_cannot_tell_a_refused_cancel(version: str) -> None:
    """24.11.5 answers these versions' refused DELETE with HTTP 200 and nothing in it."""
    job_id = {"v0.0.40": 5, "v0.0.41": 10}[version]
    answer = DATA24 / f"converged-{version}-cancel-denied.json"
    assert DIALECTS[version].parse_cancel_errors(body(answer.name)) == []
    transport(version, {("DELETE", f"/slurm/{version}/job/{job_id}"): answer}).cancel(job_id, "nobody")
