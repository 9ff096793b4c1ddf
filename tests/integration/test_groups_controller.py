"""Issue 16 part 2: StepAllocations driven by converged-controller on the local cluster's real Slurm and
Kueue — one allocation runs its steps in slots, each step keeps its own WorkflowStep (phase, exit code,
times, log), deleting one cancels that step alone, a controller crash neither submits twice nor runs a
step twice, and a deleted allocation takes its job (and the steps still in it) down."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ControllerProcess, eventually, kubectl
from tests.integration.groups_support import (
    GROUPS_SELECTOR,
    NS,
    TERMINAL,
    allocation_manifest,
    close,
    create,
    get,
    grouped_step,
    job_steps,
    jobs_with_comment,
    new_id,
    wait_for,
)
from tests.integration.plugin_support import apply_plugin_queue

pytestmark = pytest.mark.integration


def groups_controller(env: dict[str, str], log: Path) -> ControllerProcess:
    return ControllerProcess(
        env,
        log,
        extra_args=(
            f"--label-selector={GROUPS_SELECTOR}",
            f"--shared-paths={env['CONVERGED_SHARED_DIR']}",
            "--local-queue=real",
            "--image-pull-policy=Never",
        ),
    )


@pytest.fixture(scope="module")
def group_env(slurm_identities: dict[str, str]) -> dict[str, str]:
    apply_plugin_queue(slurm_identities)
    return slurm_identities


@pytest.fixture(scope="module")
def controller(
    group_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProcess]:
    proc = groups_controller(group_env, tmp_path_factory.mktemp("groups") / "controller.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def rundir(group_env: dict[str, str]) -> Path:
    path = Path(group_env["CONVERGED_SHARED_DIR"]) / "groups-tests" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    path.parent.chmod(0o1777)
    path.chmod(0o1777)
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def echo(text: str, seconds: float = 0, code: int = 0) -> list[str]:
    return ["/bin/sh", "-c", f"echo {text} $(id -un); sleep {seconds}; exit {code}"]


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_slurm_allocation_runs_its_steps_as_job_steps_each_with_its_own_status(
    group_env: dict[str, str], controller: ControllerProcess, rundir: Path, warm: bool
) -> None:
    env, run = group_env, f"it-{new_id()}"
    alloc = create(
        env, allocation_manifest(f"{run}-g1", run, rundir, env["CONVERGED_SLURM_IMAGE"], warm=warm)
    )
    names = [f"{run}-s{i}" for i in range(3)]
    for i, name in enumerate(names):
        create(env, grouped_step(name, alloc, i, echo(f"step-{i}", 2, code=3 if i == 2 else 0)))
    done = [wait_for(env, "wfs", name, TERMINAL) for name in names]
    assert [(s["status"]["phase"], s["status"].get("exitCode")) for s in done] == [
        ("Succeeded", 0),
        ("Succeeded", 0),
        ("Failed", 3),
    ]
    ref = done[0]["status"]["backendRef"]
    assert ref["allocation"] == alloc["metadata"]["name"] and ref["kind"] == "SlurmJob"
    assert {s["status"]["backendRef"]["jobId"] for s in done} == {ref["jobId"]}  # one job for all three
    for i, step in enumerate(done):
        assert Path(step["status"]["logPath"]).read_text().startswith(f"step-{i} alice")
        assert step["status"]["startTime"] <= step["status"]["completionTime"]
    assert done[2]["status"]["reason"] == "NonZeroExitCode" and "step-2 alice" in done[2]["status"]["logTail"]
    steps = job_steps(ref["jobId"])
    assert {k: steps[k] for k in ("step-0", "step-1", "step-2")} == {
        "step-0": ("COMPLETED", "0:0"),
        "step-1": ("COMPLETED", "0:0"),
        "step-2": ("FAILED", "3:0"),
    }
    close(env, alloc["metadata"]["name"], 3)
    ended = wait_for(env, "stepallocation", alloc["metadata"]["name"], TERMINAL)
    status = ended["status"]
    assert (status["phase"], status["steps"]) == (
        "Succeeded",
        {"total": 3, "running": 0, "finished": 3, "failed": 1},
    )
    assert [c["type"] for c in status["conditions"] if c["status"] == "True"] == [
        "Submitted",
        "Closed",
        "Finished",
    ]
    assert jobs_with_comment(alloc["metadata"]["uid"]) == [str(ref["jobId"])]


def test_deleting_one_grouped_step_cancels_it_alone(
    group_env: dict[str, str], controller: ControllerProcess, rundir: Path
) -> None:
    env, run = group_env, f"it-{new_id()}"
    alloc = create(
        env, allocation_manifest(f"{run}-g1", run, rundir, env["CONVERGED_SLURM_IMAGE"], warm=True)
    )
    slow, quick, queued, later = (f"{run}-{n}" for n in ("slow", "quick", "queued", "later"))
    create(env, grouped_step(slow, alloc, 1, ["/bin/sh", "-c", f"touch {rundir}/slow-started; sleep 300"]))
    create(env, grouped_step(quick, alloc, 2, echo("quick", 20)))
    eventually("the slow step to start", lambda: (rundir / "slow-started").exists(), 90)
    wait_for(env, "wfs", quick, {"Running"})  # both slots taken (the agent claims in no set order)
    create(env, grouped_step(queued, alloc, 3, ["/bin/sh", "-c", f"touch {rundir}/queued-ran"]))
    wait_for(env, "wfs", queued, {"Queued"})  # it waits in the inbox
    kubectl(env, "delete", "wfs", slow, queued, "-n", NS, "--timeout=90s")  # the finalizers go with them
    assert get(env, "wfs", slow) is None and get(env, "wfs", queued) is None
    assert wait_for(env, "wfs", quick, TERMINAL)["status"]["phase"] == "Succeeded"
    create(env, grouped_step(later, alloc, 4, echo("later")))
    assert wait_for(env, "wfs", later, TERMINAL)["status"]["phase"] == "Succeeded"
    assert not (rundir / "queued-ran").exists()
    job = get(env, "stepallocation", alloc["metadata"]["name"])["status"]["backendRef"]["jobId"]  # type: ignore[index]
    steps = job_steps(job)
    assert steps["step-1"][0] == "CANCELLED" or steps["step-1"][1] != "0:0"  # stopped, not finished
    assert "step-3" not in steps and steps["step-4"] == ("COMPLETED", "0:0")
    close(env, alloc["metadata"]["name"], 4)
    assert (
        wait_for(env, "stepallocation", alloc["metadata"]["name"], TERMINAL)["status"]["phase"] == "Succeeded"
    )


def test_a_controller_crash_neither_resubmits_nor_reruns(
    group_env: dict[str, str], rundir: Path, tmp_path: Path
) -> None:
    env, run = group_env, f"it-{new_id()}"
    first = groups_controller(env, tmp_path / "first.log")
    first.start()
    try:
        alloc = create(env, allocation_manifest(f"{run}-g1", run, rundir, env["CONVERGED_SLURM_IMAGE"]))
        names = [f"{run}-s{i}" for i in range(3)]
        for i, name in enumerate(names):
            command = ["/bin/sh", "-c", f"echo {i} >>{rundir}/runs; sleep 6"]
            create(env, grouped_step(name, alloc, i, command))
        eventually("two steps to run", lambda: len(lines(rundir / "runs")) == 2, 120)
    finally:
        first.kill()  # SIGKILL: mid-run, one step still in the inbox
    second = groups_controller(env, tmp_path / "second.log")
    second.start()
    try:
        done = [wait_for(env, "wfs", name, TERMINAL) for name in names]
        assert {s["status"]["phase"] for s in done} == {"Succeeded"}
        close(env, alloc["metadata"]["name"], 3)
        wait_for(env, "stepallocation", alloc["metadata"]["name"], TERMINAL)
    finally:
        second.stop()
    assert sorted(lines(rundir / "runs")) == ["0", "1", "2"]  # each step ran once
    job = done[0]["status"]["backendRef"]["jobId"]
    assert jobs_with_comment(alloc["metadata"]["uid"]) == [str(job)]  # the allocation's job, once
    assert sorted(job_steps(job)) == ["step-0", "step-1", "step-2"]


def test_a_deleted_allocation_ends_its_job_and_the_steps_in_it(
    group_env: dict[str, str], controller: ControllerProcess, rundir: Path
) -> None:
    env, run = group_env, f"it-{new_id()}"
    alloc = create(env, allocation_manifest(f"{run}-g1", run, rundir, env["CONVERGED_SLURM_IMAGE"]))
    name = f"{run}-s0"
    create(env, grouped_step(name, alloc, 0, ["/bin/sh", "-c", f"touch {rundir}/started; sleep 300"]))
    eventually("the step to start", lambda: (rundir / "started").exists(), 90)
    kubectl(env, "delete", "stepallocation", alloc["metadata"]["name"], "-n", NS, "--timeout=90s")
    failed = wait_for(env, "wfs", name, TERMINAL)["status"]
    assert (failed["phase"], failed["reason"]) == ("Failed", "AllocationEnded")
    job = failed["backendRef"]["jobId"]

    def cancelled() -> bool:
        out = os.popen(f"sacct -P -n -X -j {job} -o State").read()  # noqa: S605 - a number we read back
        return out.startswith("CANCELLED")

    eventually("the allocation's job to be cancelled", cancelled, 60)


def test_kueue_allocation_runs_its_steps_in_one_pod(
    group_env: dict[str, str], controller: ControllerProcess, rundir: Path
) -> None:
    env, run = group_env, f"it-{new_id()}"
    manifest = allocation_manifest(
        f"{run}-g1", run, rundir, env["CONVERGED_STEP_IMAGE"], backend="kueue", warm=True
    )
    alloc = create(env, manifest)
    names = [f"{run}-s{i}" for i in range(3)]
    for i, name in enumerate(names):
        create(env, grouped_step(name, alloc, i, echo(f"kueue-{i}", 1, code=3 if i == 2 else 0)))
    done = [wait_for(env, "wfs", name, TERMINAL) for name in names]
    assert [(s["status"]["phase"], s["status"].get("exitCode")) for s in done] == [
        ("Succeeded", 0),
        ("Succeeded", 0),
        ("Failed", 3),
    ]
    assert {s["status"]["backendRef"]["display"] for s in done} == {f"Job/{run}-g1"}
    pods = json.loads(
        kubectl(
            env,
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            f"converged.dev/allocation-uid={alloc['metadata']['uid']}",
            "-o",
            "json",
        )
    )
    assert len(pods["items"]) == 1  # one workload, admitted once, one pod for every step
    close(env, alloc["metadata"]["name"], 3)
    assert (
        wait_for(env, "stepallocation", alloc["metadata"]["name"], TERMINAL)["status"]["phase"] == "Succeeded"
    )


def test_a_finished_runs_allocations_go_with_its_steps_after_its_retention(
    group_env: dict[str, str], rundir: Path, tmp_path: Path
) -> None:
    env, run = group_env, f"it-{new_id()}"
    # a controller of its own (retention 3 s), on objects no other controller of this module selects
    label = {"converged.dev/controller": "groups-retention"}
    retaining = ControllerProcess(
        env,
        tmp_path / "retention.log",
        extra_args=(
            "--label-selector=converged.dev/controller=groups-retention",
            f"--shared-paths={env['CONVERGED_SHARED_DIR']}",
            "--finished-run-ttl=3",
            "--retention-interval=1",
        ),
    )
    retaining.start()
    try:
        manifest = allocation_manifest(f"{run}-g1", run, rundir, env["CONVERGED_SLURM_IMAGE"])
        manifest["metadata"]["labels"].update(label)
        alloc = create(env, manifest)
        names = [f"{run}-s{i}" for i in range(2)]
        for i, name in enumerate(names):
            create(env, grouped_step(name, alloc, i, echo(f"step-{i}")))
        close(env, alloc["metadata"]["name"], 2)
        eventually(
            "the run's steps and its allocation deleted",
            lambda: all(
                get(env, k, n) is None for k, n in [("alloc", f"{run}-g1"), *(("wfs", n) for n in names)]
            ),
            timeout=180,
        )
    finally:
        retaining.stop()
    assert "deleted its 2 steps and 1 StepAllocations" in retaining.log.read_text()
    assert len(jobs_with_comment(alloc["metadata"]["uid"])) == 1  # it ran, once, before it went
