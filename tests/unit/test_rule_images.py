"""A step in its rule's own image, on both backends' builders: the batch script runs for real under bash
(with a stand-in Apptainer on PATH, our only fake: it runs the command after the image, as the driver
with --cleanenv and the APPTAINERENV_ variables, as the rule's container without), the Kueue Job's pod
is checked field by field, and the refusals name what to change."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from converged_bridge.api.slurmcluster import ContainerRuntime
from converged_bridge.api.workflowstep import Phase, WorkflowStep
from converged_bridge.backends.kueue.intents import DeleteObject
from converged_bridge.backends.kueue.operators import KueueSite, build_operator_object
from converged_bridge.backends.kueue.operators.shared import SharedVolume
from converged_bridge.backends.kueue.outcome import image_pull_failure
from converged_bridge.backends.kueue.plan import KueueView, plan_kueue_step
from converged_bridge.errors import InvalidStep
from converged_bridge.handover.build import DRIVER_PRELUDE, RUNNER
from converged_bridge.reconcile.intents import WriteStatus
from converged_bridge.reconcile.status import StatusTiming
from converged_bridge.slurm.batch_script import build_batch_script
from tests.unit.test_batch_script import LOG_DIR, UID, make_cluster, run_script

FAKE_APPTAINER = f"""#!{sys.executable}
import os, sys
args = sys.argv[1:]
image = next(i for i, a in enumerate(args) if a in ("driver.sif", "/wf/.snakemake/singularity/x.simg"))
options, command = args[:image], args[image + 1:]
env = dict(os.environ)
if "--cleanenv" in options:  # the driver: only what APPTAINERENV_ hands in, its PATH prepended
    env = {{k[len("APPTAINERENV_"):]: v for k, v in os.environ.items() if k.startswith("APPTAINERENV_")}}
    env["PATH"] = env.pop("PREPEND_PATH") + ":" + os.environ["PATH"]
else:
    env["IN_RULE_IMAGE"] = "yes"
os.execvpe(command[0], command, env)
"""


def rule_step(**spec: Any) -> WorkflowStep:
    base: dict[str, Any] = {
        "workflow": {"runId": "run-1", "rule": "bwa_map", "jobId": 7},
        "backend": "slurm",
        "slurm": {"cluster": "hpc"},
        "image": "driver.sif",
        "ruleImages": [
            {"url": "docker://registry.site:5443/alice/bwa:1", "path": "/wf/.snakemake/singularity/x.simg"}
        ],
        "command": ["sh", "-c", "echo driver"],
        "workingDir": "/shared/project",
        "resources": {"cpus": 2, "memMiB": 1024, "runtimeMinutes": 30},
    }
    base.update(spec)
    return WorkflowStep.model_validate(
        {"metadata": {"name": "bwa-map-7", "namespace": "alice", "uid": UID}, "spec": base}
    )


def test_on_slurm_the_rules_command_runs_in_its_image_and_its_exit_code_is_the_jobs(tmp_path: Path) -> None:
    """The driver's `apptainer exec IMAGE bash -c CMD` (what snakemake runs) reaches the node's runtime
    through the shim and the runner; output and exit code come back through the driver."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "apptainer").write_text(FAKE_APPTAINER)
    (fake_bin / "apptainer").chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    inner = 'echo "in rule image: ${IN_RULE_IMAGE:-no} in $(pwd)"; echo to-stderr >&2; exit 4'
    driver = (
        "echo driver: ${IN_RULE_IMAGE:-no}; "
        f"apptainer --quiet --silent exec --home {workdir} /wf/.snakemake/singularity/x.simg "
        f"bash -c '{inner}'; echo driver saw $?; exit 5"
    )
    step = rule_step(command=["sh", "-c", driver], workingDir=str(workdir))
    script = build_batch_script(step, make_cluster(bindPaths=[str(tmp_path)]), uid=UID, log_dir=LOG_DIR)
    done = run_script(script, workdir, fake_bin, {"TMPDIR": str(tmp_path)})
    assert done.stdout.splitlines() == ["driver: no", f"in rule image: yes in {workdir}", "driver saw 4"]
    assert "to-stderr" in done.stderr
    assert done.returncode == 5
    assert [p.name for p in tmp_path.glob("converged-handover.*")] == []  # cleaned up on exit


@pytest.mark.parametrize("runtime", [ContainerRuntime.CHARLIECLOUD, ContainerRuntime.PODMAN])
def test_on_slurm_other_runtimes_are_refused_naming_what_is_needed(runtime: ContainerRuntime) -> None:
    with pytest.raises(InvalidStep, match="needs Apptainer or Singularity on the Slurm nodes"):
        build_batch_script(rule_step(), make_cluster(runtime), uid=UID, log_dir=LOG_DIR)


def test_on_slurm_an_mpi_step_in_a_rule_image_is_refused() -> None:
    step = rule_step(resources={"cpus": 1, "tasks": 4, "nodes": 2})
    with pytest.raises(InvalidStep, match="one task on one node"):
        build_batch_script(step, make_cluster(), uid=UID, log_dir=LOG_DIR)


SITE = KueueSite(default_local_queue="default", shared_volumes=(SharedVolume("/shared"),))
NOW = datetime(2026, 12, 7, 10, 5, tzinfo=UTC)


def kueue_rule_step(**spec: Any) -> WorkflowStep:
    return rule_step(backend="kueue", slurm=None, image="localhost/converged/step:1", **spec)


def test_on_kubernetes_the_pod_runs_the_driver_beside_one_sidecar_per_rule_image() -> None:
    step = kueue_rule_step(
        ruleImages=[
            {"url": "docker://registry.site:5443/alice/bwa:1", "path": "/wf/a.simg"},
            {"url": "docker://registry.site:5443/alice/samtools:1", "path": "/wf/b.simg"},
        ]
    )
    pod = build_operator_object(step, SITE).body["spec"]["template"]["spec"]
    (driver,) = pod["containers"]
    first, second = pod["initContainers"]
    assert driver["image"] == "localhost/converged/step:1"
    assert driver["command"][:3] == ["/bin/sh", "-c", DRIVER_PRELUDE]
    assert driver["command"][4:] == ["sh", "-c", "echo driver"]
    assert "resources" not in driver  # the step's requests are counted once, on the rule's container
    env = {e["name"]: e["value"] for e in driver["env"]}
    assert json.loads(env["CONVERGED_RULE_IMAGES"]) == {"/wf/a.simg": "queue-0", "/wf/b.simg": "queue-1"}
    assert [c["image"] for c in (first, second)] == [
        "registry.site:5443/alice/bwa:1",
        "registry.site:5443/alice/samtools:1",
    ]
    assert all(c["restartPolicy"] == "Always" for c in (first, second))  # native sidecars
    assert first["command"] == ["/bin/sh", "-c", RUNNER, "converged-runner", "/converged/handover", "queue-0"]
    assert first["resources"] == {"requests": {"cpu": "2", "memory": "1024Mi"}}
    assert "resources" not in second
    assert first["workingDir"] == "/shared/project"
    mounts = {m["name"]: m["mountPath"] for m in first["volumeMounts"]}
    assert mounts == {
        "shared-0": "/shared",
        "converged-handover": "/converged/handover",
        "converged-searchpaths": "/mnt/snakemake_searchpaths",
    }
    assert {v["name"] for v in pod["volumes"]} == {"shared-0", "converged-handover", "converged-searchpaths"}


def test_on_kubernetes_the_driver_prelude_runs_under_sh(tmp_path: Path) -> None:
    """The driver's argv, run as the kubelet would (the hand-over directory in a temporary one)."""
    driver = build_operator_object(kueue_rule_step(), SITE).body["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in driver["env"]} | {
        "CONVERGED_HANDOVER": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(driver["command"], env=env, capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout == "driver\n"
    assert (tmp_path / "queue-0").is_fifo()


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"operator": "mpijob", "resources": {"cpus": 1, "tasks": 2, "nodes": 2}}, "runs as a batch Job"),
        (
            {"ruleImages": [{"url": "/shared/alice/tools.sif", "path": "/shared/alice/tools.sif"}]},
            "site registry",
        ),
    ],
)
def test_on_kubernetes_what_cannot_run_is_refused_with_the_fix_named(
    spec: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidStep, match=match):
        build_operator_object(kueue_rule_step(**spec), SITE)


def pod_waiting(container: str, reason: str, init: bool = True) -> dict[str, Any]:
    status = {
        "name": container,
        "image": "registry.site:5443/alice/nope:1",
        "state": {
            "waiting": {
                "reason": reason,
                "message": 'Back-off pulling image "registry.site:5443/alice/nope:1"',
            }
        },
    }
    key = "initContainerStatuses" if init else "containerStatuses"
    return {"status": {"phase": "Pending", key: [status]}}


def test_a_pull_that_keeps_failing_ends_the_step_failed_and_deletes_its_job() -> None:
    step = kueue_rule_step()
    job = build_operator_object(step, SITE).body
    workload = {
        "metadata": {"name": "job-bwa-map-7"},
        "status": {
            "conditions": [
                {"type": "Admitted", "status": "True", "lastTransitionTime": "2026-12-07T10:00:00Z"}
            ]
        },
    }
    view = KueueView(SITE, job, workload, [pod_waiting("rule-0", "ImagePullBackOff")], StatusTiming(NOW))
    delete, *rest = plan_kueue_step(step, view)
    assert isinstance(delete, DeleteObject) and delete.name == job["metadata"]["name"]
    (status,) = [i for i in rest if isinstance(i, WriteStatus)]
    assert status.status.phase == Phase.FAILED
    assert status.status.reason == "ImagePullBackOff"
    assert "container rule-0 cannot pull registry.site:5443/alice/nope:1" in (status.status.message or "")


def test_a_first_failed_pull_is_waited_out() -> None:
    assert image_pull_failure([pod_waiting("rule-0", "ErrImagePull")]) is None
    assert image_pull_failure([pod_waiting("step", "InvalidImageName", init=False)]) is not None
