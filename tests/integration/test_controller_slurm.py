"""Issue 4 acceptance: WorkflowSteps on the local cluster's real Slurm, driven by converged-controller."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from converged_bridge.slurm.jobs import JobState, parse_sacct_parsable
from tests.integration.conftest import TEST_LABELS, UNMAPPED_NS, ControllerProcess, eventually, kubectl

pytestmark = pytest.mark.integration

TERMINAL = {"Succeeded", "Failed", "Cancelled"}


def step_manifest(
    name: str,
    namespace: str,
    command: list[str],
    workdir: Path,
    *,
    cluster: str = "converged",
    rule: str = "demo",
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "workflow": {
            "runId": "it-controller",
            "rule": rule,
            "jobId": 1,
            "wildcards": spec.pop("wildcards", {}),
        },
        "backend": "slurm",
        "slurm": {"cluster": cluster, **spec.pop("slurm", {})},
        "command": command,
        "workingDir": str(workdir),
        "resources": {"cpus": 1, "memMiB": 100, "runtimeMinutes": 5, **spec.pop("resources", {})},
        **spec,
    }
    return {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "WorkflowStep",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(TEST_LABELS)},
        "spec": body,
    }


def create(env: dict[str, str], manifest: dict[str, Any]) -> dict[str, Any]:
    return json.loads(kubectl(env, "create", "-o", "json", "-f", "-", input=json.dumps(manifest)))  # type: ignore[no-any-return]


def get(env: dict[str, str], namespace: str, name: str) -> dict[str, Any] | None:
    out = kubectl(env, "get", "wfs", name, "-n", namespace, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def wait_phase(
    env: dict[str, str], ns: str, name: str, phases: set[str], timeout: float = 90
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(env, ns, name)
        return obj if obj and obj.get("status", {}).get("phase") in phases else None

    return eventually(f"{ns}/{name} to reach {phases}", probe, timeout)  # type: ignore[no-any-return]


def sacct(*job_ids: int, fields: str = "JobID,JobName,User,State,ExitCode,Partition,NodeList,Comment") -> str:
    return subprocess.run(
        ["sacct", "-P", "-X", "-j", ",".join(map(str, job_ids)), "-o", fields],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_step_succeeds_and_kubectl_shows_its_slurm_job(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("ok")
    create(env, step_manifest(name, "team-a", ["python3", "-c", "print('hi')"], workdir))
    done = wait_phase(env, "team-a", name, TERMINAL)
    status = done["status"]
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    assert "reason" not in status, "a pending/submitted reason must be cleared once the step succeeds"
    job_id = status["backendRef"]["jobId"]
    assert status["backendRef"]["display"] == f"converged/{job_id}"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Submitted": "True",
        "Running": "False",
        "Finished": "True",
    }
    assert all(c["observedGeneration"] == done["metadata"]["generation"] for c in status["conditions"])
    table = kubectl(env, "get", "wfs", name, "-n", "team-a")
    assert f"converged/{job_id}" in table and "Succeeded" in table and "slurm" in table
    assert Path(status["logPath"]).read_text() == "hi\n"
    described = kubectl(env, "describe", "wfs", name, "-n", "team-a")
    assert "Succeeded" in described and f"converged/{job_id}" in described


def test_failing_step_reports_exit_code_reason_and_log_tail(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("fail")
    script = (
        "import sys; print('x' * 5000, flush=True); print('the real cause', file=sys.stderr); sys.exit(3)"
    )
    create(env, step_manifest(name, "team-a", ["python3", "-c", script], workdir))
    status = wait_phase(env, "team-a", name, TERMINAL)["status"]
    assert (status["phase"], status["exitCode"], status["reason"]) == ("Failed", 3, "NonZeroExitCode")
    assert status["logTail"].endswith("the real cause\n") and len(status["logTail"]) <= 4096
    events = kubectl(env, "get", "events", "-n", "team-a", "--field-selector", f"involvedObject.name={name}")
    assert "Failed" in events


def test_step_over_its_time_limit_ends_with_timeout(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("slow")
    create(env, step_manifest(name, "team-a", ["sleep", "600"], workdir, resources={"runtimeMinutes": 1}))
    status = wait_phase(env, "team-a", name, TERMINAL, timeout=240)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "TIMEOUT")


def test_gpu_step_lands_on_the_gpu_partition(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("gpu")
    command = ["bash", "-c", 'echo "$SLURMD_NODENAME $CUDA_VISIBLE_DEVICES"']
    create(
        env,
        step_manifest(
            name,
            "team-a",
            command,
            workdir,
            slurm={"partition": "gpu"},
            resources={"gpus": 1, "gpuModel": "a100"},
        ),
    )
    status = wait_phase(env, "team-a", name, TERMINAL)["status"]
    assert status["phase"] == "Succeeded"
    assert Path(status["logPath"]).read_text().split() == ["g1", "0"]
    # right after a job ends, 22.05's sacct may show a placeholder row without partition: wait for it
    eventually(
        "sacct to record the job on gpu/g1", lambda: "|gpu|g1|" in sacct(status["backendRef"]["jobId"]), 30
    )


def test_deleting_a_running_step_cancels_its_job(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("del")
    create(env, step_manifest(name, "team-a", ["sleep", "600"], workdir))
    job_id = wait_phase(env, "team-a", name, {"Running"})["status"]["backendRef"]["jobId"]
    kubectl(env, "delete", "wfs", name, "-n", "team-a", "--timeout=60s")
    assert get(env, "team-a", name) is None
    state = eventually(
        "sacct to show the cancel",
        lambda: (jobs := parse_sacct_parsable(sacct(job_id))) and jobs[0].terminal and jobs[0].state,
    )
    assert state is JobState.CANCELLED


def test_job_cancelled_outside_shows_cancelled(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("scancel")
    create(env, step_manifest(name, "team-a", ["sleep", "600"], workdir))
    job_id = wait_phase(env, "team-a", name, {"Running"})["status"]["backendRef"]["jobId"]
    subprocess.run(["scancel", str(job_id)], check=True)
    status = wait_phase(env, "team-a", name, TERMINAL)["status"]
    assert (status["phase"], status["reason"]) == ("Cancelled", "CANCELLED")


def test_steps_run_as_the_user_mapped_to_their_namespace(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env = slurm_identities
    ids = {}
    for ns, user in (("team-a", "alice"), ("team-b", "bob")):
        name = unique("who")
        create(env, step_manifest(name, ns, ["id", "-un"], workdir))
        status = wait_phase(env, ns, name, TERMINAL)["status"]
        assert status["phase"] == "Succeeded"
        assert Path(status["logPath"]).read_text().strip() == user
        ids[user] = status["backendRef"]["jobId"]
    rows = {j.job_id: j.user for j in parse_sacct_parsable(sacct(*ids.values()))}
    assert rows == {ids["alice"]: "alice", ids["bob"]: "bob"}


def test_namespace_without_mapping_is_refused(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("nomap")
    create(env, step_manifest(name, UNMAPPED_NS, ["true"], workdir))
    status = wait_phase(env, UNMAPPED_NS, name, TERMINAL)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "NoUserMapping")
    assert UNMAPPED_NS in status["message"] and "backendRef" not in status


def test_invalid_specs_never_reach_slurm(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env = slurm_identities
    bad_memory = step_manifest(unique("negmem"), "team-a", ["true"], workdir, resources={"memMiB": -5})
    cp = subprocess.run(
        [f"{env['CONVERGED_LOCAL_BIN']}/kubectl", f"--kubeconfig={env['KUBECONFIG']}", "create", "-f", "-"],
        input=json.dumps(bad_memory),
        capture_output=True,
        text=True,
    )
    assert cp.returncode != 0 and "memMiB" in cp.stderr

    name = unique("nopart")
    create(env, step_manifest(name, "team-a", ["true"], workdir, slurm={"partition": "nosuch"}))
    status = wait_phase(env, "team-a", name, TERMINAL)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "SubmitFailed")
    assert "Invalid partition name specified" in status["message"]
    assert "Traceback" not in status["message"]

    name = unique("noimage")
    create(env, step_manifest(name, "team-a", ["true"], workdir, cluster="converged-apptainer"))
    status = wait_phase(env, "team-a", name, TERMINAL)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec")
    assert "image" in status["message"] and "backendRef" not in status


def test_hostile_strings_reach_the_job_verbatim(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("hostile")
    marker = workdir / f"pwned-{name}"
    hostile = [
        f"$(touch {marker})",
        f"`touch {marker}`",
        "a\nb",
        f"'; touch {marker}; '",
        "ünïcødé ✓",
        "*",
        "-",
    ]
    rule = 'rule "$(touch x)" `id` ;|& ünïcødé\nnext'
    wildcards = {"sample": f"$(touch {marker})", "path": "a b/'c'"}
    command = ["python3", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *hostile]
    create(env, step_manifest(name, "team-a", command, workdir, rule=rule, wildcards=wildcards))
    status = wait_phase(env, "team-a", name, TERMINAL)["status"]
    assert status["phase"] == "Succeeded", status
    assert json.loads(Path(status["logPath"]).read_text()) == hostile
    assert not marker.exists()
    obj = get(env, "team-a", name)
    assert obj is not None and obj["spec"]["workflow"]["rule"] == rule


def test_cli_transport_runs_a_step_too(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("cli")
    create(env, step_manifest(name, "team-b", ["id", "-un"], workdir, cluster="converged-cli"))
    status = wait_phase(env, "team-b", name, TERMINAL)["status"]
    assert status["phase"] == "Succeeded"
    assert Path(status["logPath"]).read_text().strip() == "bob"


def test_no_token_in_specs_statuses_events_or_logs(
    controller: ControllerProcess, slurm_identities: dict[str, str], slurm_tokens: dict[str, str]
) -> None:
    env = slurm_identities
    seen = kubectl(env, "get", "wfs", "-A", "-o", "json") + kubectl(env, "get", "events", "-A", "-o", "json")
    seen += kubectl(env, "get", "slurmclusters", "-o", "json") + controller.log.read_text()
    for user, token in slurm_tokens.items():
        assert token not in seen, f"{user}'s token leaked"
        assert token.split(".")[2] not in seen


def test_kubectl_converged_logs_prints_the_step_output(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("logs")
    create(env, step_manifest(name, "team-a", ["bash", "-c", "echo line1; echo line2; echo line3"], workdir))
    wait_phase(env, "team-a", name, TERMINAL)
    plugin_dir = str(Path(sys.executable).parent)  # kubectl-converged is installed beside python
    path = f"{plugin_dir}:{env['CONVERGED_LOCAL_BIN']}:{os.environ['PATH']}"
    run = subprocess.run(
        [
            f"{env['CONVERGED_LOCAL_BIN']}/kubectl",
            "converged",
            "--kubeconfig",
            env["KUBECONFIG"],
            "logs",
            name,
            "-n",
            "team-a",
            "--tail",
            "2",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "line2\nline3\n"
    missing = subprocess.run(
        [
            f"{plugin_dir}/kubectl-converged",
            "--kubeconfig",
            env["KUBECONFIG"],
            "logs",
            "no-such-step",
            "-n",
            "team-a",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "not found" in missing.stderr and "Traceback" not in missing.stderr
