"""hpc2, the local cluster's second Slurm cluster (Slurm 26.05), for real: every dialect it serves
(v0.0.42-v0.0.45) drives jobs through slurmrestd — submission as a mapped user, exit codes, output paths,
cancellation (and its refusal), capacity —; the CLI transport reads 26.05's default JSON (v0.0.45);
a step runs in the step image's SIF as alice; the controller runs a WorkflowStep there; and the site's
daemon mirrors hpc1 and hpc2 side by side with their different Slurm releases.

hpc2's commands (sid's sbatch, sacct, scontrol ...) need its root: they run through
`deploy/local/cluster hpc2-exec` ($CONVERGED_HPC2_EXEC).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.errors import PermanentBackendError
from converged_bridge.slurm.batch_script import build_batch_options, build_batch_script
from converged_bridge.slurm.cli import CliTransport
from converged_bridge.slurm.jobs import JobState, SlurmJob, index_by_step, parse_sacct_parsable
from converged_bridge.slurm.restd import RestdTransport
from converged_bridge.slurm.transport import SlurmTransport, Submission
from tests.integration.conftest import SYSTEM_NS, TEAMS, ControllerProcess, apply, kubectl
from tests.integration.test_controller_slurm import TERMINAL, create, step_manifest, unique, wait_phase

pytestmark = pytest.mark.integration

SERVED = ("v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45")  # the data parsers of Slurm 26.05
TEST_CLUSTER = "converged-hpc2"  # the tests' own SlurmCluster on hpc2 (the site's is `hpc2`)


def hpc2(env: dict[str, str], *argv: str, user: str | None = None, check: bool = True) -> str:
    """One of hpc2's commands, run in its root."""
    cmd = [*shlex.split(env["CONVERGED_HPC2_EXEC"]), *(["--user", user] if user else []), "--", *argv]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and cp.returncode != 0:
        raise AssertionError(f"hpc2 {' '.join(argv)} failed ({cp.returncode}): {cp.stderr}")
    return cp.stdout


@pytest.fixture(scope="module")
def tokens(cluster_env: dict[str, str]) -> dict[str, str]:
    """hpc2 JWTs of root, alice and bob."""
    out = {}
    for user in ("root", *TEAMS.values()):
        line = hpc2(cluster_env, "scontrol", "token", f"username={user}", "lifespan=86400").strip()
        out[user] = line.split("=", 1)[1]
    return out


@pytest.fixture(scope="module")
def workdir(cluster_env: dict[str, str]) -> Path:
    path = Path(cluster_env["CONVERGED_SHARED_DIR"]) / "hpc2-tests"
    path.mkdir(exist_ok=True)
    path.chmod(0o1777)
    return path


def restd_transport(env: dict[str, str], tokens: dict[str, str], version: str | None) -> RestdTransport:
    return RestdTransport(
        env["SLURMRESTD_URL_HPC2"], tokens.__getitem__, service_user="root", api_version=version
    )


@pytest.fixture(params=SERVED)
def restd(
    request: pytest.FixtureRequest, cluster_env: dict[str, str], tokens: dict[str, str]
) -> Iterator[RestdTransport]:
    t = restd_transport(cluster_env, tokens, request.param)
    yield t
    t.close()


def make_step(
    command: list[str], partition: str = "cpu", image: str | None = None, **resources: Any
) -> tuple[WorkflowStep, str]:
    uid = str(uuid.uuid4())
    step = WorkflowStep.model_validate(
        {
            "metadata": {"name": f"h2-{uid[:8]}", "namespace": "team-a", "uid": uid},
            "spec": {
                "workflow": {"runId": "it-hpc2", "rule": "hpc2 test", "jobId": 1},
                "backend": "slurm",
                "slurm": {"cluster": "hpc2", "partition": partition, "account": "default"},
                "command": command,
                "resources": {"cpus": 1, "memMiB": 100, "runtimeMinutes": 5, **resources},
                **({"image": image} if image else {}),
            },
        }
    )
    return step, uid


def submit(
    t: SlurmTransport,
    workdir: Path,
    step: WorkflowStep,
    uid: str,
    *,
    user: str = "alice",
    cluster: dict[str, Any] | None = None,
) -> int:
    spec = SlurmClusterSpec.model_validate(cluster or {"transport": "cli", "containerRuntime": "none"})
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    logs.chmod(0o1777)
    options = build_batch_options(step, spec, uid=uid, log_dir=str(logs))
    script = build_batch_script(step, spec, uid=uid, log_dir=str(logs))
    return t.submit(Submission(script=script, options=options, working_dir=str(workdir), user=user))


def wait_terminal(t: SlurmTransport, uid: str, timeout: float = 90) -> SlurmJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = index_by_step(t.list_jobs()).get(uid)
        if job is not None and job.terminal:
            return job
        time.sleep(0.5)
    pytest.fail(f"no terminal job for step {uid} after {timeout}s")


def wait_running(t: SlurmTransport, uid: str, timeout: float = 60) -> SlurmJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = index_by_step(t.list_jobs()).get(uid)
        if job is not None and job.state is JobState.RUNNING:
            return job
        time.sleep(0.5)
    pytest.fail(f"step {uid} not running after {timeout}s")


# --- the two clusters ---


def test_hpc1_and_hpc2_run_different_slurm_releases_and_dialects(
    cluster_env: dict[str, str], tokens: dict[str, str]
) -> None:
    hpc1_token = cluster_env["SLURM_JWT"]
    one = RestdTransport(cluster_env["SLURMRESTD_URL"], lambda user: hpc1_token, service_user="root")
    two = restd_transport(cluster_env, tokens, None)
    assert one.server_version().startswith("22.05.") and one.dialect.version == "v0.0.38"
    assert two.server_version().startswith("26.05.") and two.dialect.version == "v0.0.45"
    assert "hpc2" in cluster_env["CONVERGED_SITE_SLURM_CLUSTERS"].split(",")


def test_hpc2_refuses_hpc1s_token(cluster_env: dict[str, str]) -> None:
    """Each cluster signs JWTs with its own key."""
    hpc1_token = cluster_env["SLURM_JWT"]
    t = RestdTransport(
        cluster_env["SLURMRESTD_URL_HPC2"],
        lambda user: hpc1_token,
        service_user="root",
        api_version="v0.0.45",
    )
    with pytest.raises(PermanentBackendError, match="HTTP 511"):
        t.list_jobs()


# --- every dialect 26.05 serves, live ---


def test_a_step_runs_as_alice_and_is_found_by_its_uid(restd: RestdTransport, workdir: Path) -> None:
    step, uid = make_step(["/bin/sh", "-c", 'echo "$(id -un) on $SLURMD_NODENAME of $SLURM_CLUSTER_NAME"'])
    job_id = submit(restd, workdir, step, uid)
    job = wait_terminal(restd, uid)
    assert (job.job_id, job.state, job.exit_code, job.user) == (job_id, JobState.COMPLETED, 0, "alice")
    assert job.partition == "cpu" and job.nodes in ("h2n1", "h2n2")
    assert job.stdout == str(workdir / "logs" / f"converged-{uid}.log")  # v0.0.43+: stdout_expanded
    assert Path(job.stdout).read_text() == f"alice on {job.nodes} of hpc2\n"


def test_a_failing_step_reports_its_exit_code(restd: RestdTransport, workdir: Path) -> None:
    step, uid = make_step(["/bin/sh", "-c", "exit 7"], partition="long")
    submit(restd, workdir, step, uid, user="bob")
    job = wait_terminal(restd, uid)
    assert (job.state, job.exit_code, job.reason, job.user) == (JobState.FAILED, 7, "NonZeroExitCode", "bob")
    assert job.partition == "long"


def test_cancel_ends_a_running_job_only_for_its_owner(restd: RestdTransport, workdir: Path) -> None:
    step, uid = make_step(["sleep", "300"])
    job_id = submit(restd, workdir, step, uid)
    wait_running(restd, uid)
    with pytest.raises(PermanentBackendError, match="Access/permission denied") as refused:
        restd.cancel(job_id, "bob")  # v0.0.42+ report the refusal inside an HTTP 200
    assert refused.value.codes == (2002,)
    assert index_by_step(restd.list_jobs())[uid].state is JobState.RUNNING
    restd.cancel(job_id, "alice")
    assert wait_terminal(restd, uid).state is JobState.CANCELLED
    restd.cancel(job_id, "alice")  # already over: no error


def test_capacity_of_hpc2(restd: RestdTransport) -> None:
    snap = restd.query_capacity()
    assert (snap.slurm_version[:6], snap.source) == ("26.05.", f"data_parser/{restd.dialect.version}")
    parts = {p.name: p for p in snap.partitions}
    assert sorted(parts) == ["bigmem", "cpu", "long"]
    assert (parts["cpu"].total.nodes, parts["cpu"].total.cpus, parts["cpu"].max_time_minutes) == (2, 16, 1440)
    assert (parts["long"].total.nodes, parts["long"].max_time_minutes) == (2, 7 * 1440)
    assert (parts["bigmem"].total.nodes, parts["bigmem"].total.memory_mib) == (1, 257000)


# --- Apptainer, the CLI, accounting ---


def test_a_step_runs_in_the_sif_as_alice(
    cluster_env: dict[str, str], tokens: dict[str, str], workdir: Path
) -> None:
    t = restd_transport(cluster_env, tokens, None)
    sif = cluster_env["CONVERGED_SLURM_IMAGE"]
    step, uid = make_step(
        ["/bin/sh", "-c", 'echo "$APPTAINER_CONTAINER $(id -un) $SLURM_CLUSTER_NAME"; python3 -V'],
        partition="bigmem",
        image=sif,
    )
    cluster = {"transport": "cli", "containerRuntime": "apptainer", "bindPaths": [str(workdir)]}
    submit(t, workdir, step, uid, cluster=cluster)
    job = wait_terminal(t, uid)
    out = Path(job.stdout).read_text()
    assert (job.state, job.exit_code, job.nodes) == (JobState.COMPLETED, 0, "h2big"), out
    assert out.splitlines()[0] == f"{sif} alice hpc2"  # inside the SIF, as alice, the job's SLURM_*
    assert out.splitlines()[1].startswith("Python 3.11")  # the step image's Python: hpc2's root has none


def test_the_cli_transport_reads_26_05s_default_json(
    cluster_env: dict[str, str], workdir: Path, tmp_path: Path
) -> None:
    """sbatch, squeue --json (v0.0.45 unasked), sinfo --json and scancel of 26.05, through hpc2's root."""
    for command in ("sbatch", "squeue", "sinfo", "scancel", "scontrol"):
        wrapper = tmp_path / command
        wrapper.write_text(f'#!/bin/sh\nexec {cluster_env["CONVERGED_HPC2_EXEC"]} -- {command} "$@"\n')
        wrapper.chmod(0o755)
    t = CliTransport(bin_dir=str(tmp_path))
    assert t.server_version().startswith("26.05.")
    step, uid = make_step(["/bin/sh", "-c", "echo via the cli"])
    job_id = submit(t, workdir, step, uid, user="root")
    job = wait_terminal(t, uid)
    assert (job.job_id, job.state, job.exit_code) == (job_id, JobState.COMPLETED, 0)
    assert Path(job.stdout).read_text() == "via the cli\n"
    snap = t.query_capacity()
    assert [p.name for p in snap.partitions] == ["bigmem", "cpu", "long"]
    assert snap.source == "data_parser/v0.0.45"


def test_accounting_keeps_the_step_uid(
    cluster_env: dict[str, str], tokens: dict[str, str], workdir: Path
) -> None:
    t = restd_transport(cluster_env, tokens, None)
    step, uid = make_step(["true"])
    job_id = submit(t, workdir, step, uid)
    wait_terminal(t, uid)
    fields = "JobID,JobName,User,State,ExitCode,Partition,Comment"
    deadline = time.monotonic() + 30
    while True:  # slurmdbd records the job a moment after slurmctld ends it
        rows = parse_sacct_parsable(hpc2(cluster_env, "sacct", "-P", "-j", str(job_id), "-o", fields))
        if (rows and rows[0].terminal) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [(r.job_id, r.user, r.state, r.step_uid) for r in rows] == [
        (job_id, "alice", JobState.COMPLETED, uid)
    ]


# --- the controller, and the site ---


@pytest.fixture(scope="module")
def hpc2_identities(
    slurm_identities: dict[str, str], tokens: dict[str, str], workdir: Path
) -> dict[str, str]:
    """The tests' SlurmCluster on hpc2 (Apptainer), its JWTs in Secrets of their own."""
    env = slurm_identities
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": f"tests-hpc2-token-{user}", "namespace": SYSTEM_NS},
            "stringData": {"token": token},
        }
        for user, token in tokens.items()
    ]

    def ref(user: str) -> dict[str, str]:
        return {"namespace": SYSTEM_NS, "name": f"tests-hpc2-token-{user}", "key": "token"}

    cluster = {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "SlurmCluster",
        "metadata": {"name": TEST_CLUSTER},
        "spec": {
            "transport": "restd",
            "restd": {"url": env["SLURMRESTD_URL_HPC2"], "user": "root", "tokenSecretRef": ref("root")},
            "containerRuntime": "apptainer",
            "bindPaths": [env["CONVERGED_SHARED_DIR"]],
            "defaults": {"partition": "cpu", "account": "default"},
            "userMapping": [
                {"namespace": ns, "user": u, "tokenSecretRef": ref(u)} for ns, u in TEAMS.items()
            ],
        },
    }
    apply(env, *secrets)
    apply(env, cluster)
    return env


def test_the_controller_runs_a_step_on_hpc2(
    controller: ControllerProcess, hpc2_identities: dict[str, str], workdir: Path
) -> None:
    env, name = hpc2_identities, unique("hpc2")
    out = workdir / f"{name}.txt"
    manifest = step_manifest(
        name,
        "team-a",
        ["/bin/sh", "-c", f'echo "$(id -un) $SLURM_CLUSTER_NAME $SLURM_JOB_PARTITION" > {out}'],
        workdir,
        cluster=TEST_CLUSTER,
        image=env["CONVERGED_SLURM_IMAGE"],
        slurm={"partition": "long"},
    )
    create(env, manifest)
    status = wait_phase(env, "team-a", name, TERMINAL, timeout=180)["status"]
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    assert status["backendRef"]["display"] == f"{TEST_CLUSTER}/{status['backendRef']['jobId']}"
    assert out.read_text() == "alice hpc2 long\n"


def test_the_site_mirrors_hpc1_and_hpc2_with_their_releases(cluster_env: dict[str, str]) -> None:
    def mirrored() -> dict[str, Any]:
        out = kubectl(cluster_env, "get", "slurmclusters", "hpc1", "hpc2", "-o", "json")
        return {c["metadata"]["name"]: c.get("status", {}) for c in json.loads(out)["items"]}

    deadline = time.monotonic() + 60
    status = mirrored()
    while not all(s.get("slurmVersion") for s in status.values()):
        assert time.monotonic() < deadline, status
        time.sleep(1)
        status = mirrored()
    for name, release, dialect in (("hpc1", "22.05.", "v0.0.38"), ("hpc2", "26.05.", "v0.0.45")):
        conditions = {c["type"]: c["status"] for c in status[name]["conditions"]}
        assert conditions["Reachable"] == "True", (name, status[name])
        assert status[name]["slurmVersion"].startswith(release)
        assert status[name]["openapiVersion"] == dialect
    nodes = kubectl(cluster_env, "get", "nodes", "-l", "converged.dev/slurm-cluster=hpc2", "-o", "name")
    assert sorted(nodes.split()) == [f"node/slurm-hpc2-{p}" for p in ("bigmem", "cpu", "long")]
