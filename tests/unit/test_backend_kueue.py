"""The Kueue backend's pure parts: object builders and status mapping (real Kueue 0.14 objects)."""

from __future__ import annotations

import copy
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from converged_bridge.api.workflowstep import Phase, WorkflowStep
from converged_bridge.backends.kueue.intents import CreateObject, DeleteObject
from converged_bridge.backends.kueue.operators import KueueSite, build_operator_object
from converged_bridge.backends.kueue.operators.common import NAME_MAX, build_object_name
from converged_bridge.backends.kueue.operators.jobset import build_jobset
from converged_bridge.backends.kueue.operators.minicluster import build_minicluster
from converged_bridge.backends.kueue.operators.mpijob import WAIT_FOR_WORKERS, build_mpijob
from converged_bridge.backends.kueue.operators.shared import SharedVolume
from converged_bridge.backends.kueue.outcome import map_kueue_status
from converged_bridge.backends.kueue.plan import KueueView, plan_kueue_cleanup, plan_kueue_step
from converged_bridge.errors import InvalidStep
from converged_bridge.reconcile.intents import Intent, RemoveFinalizer, WriteStatus
from converged_bridge.reconcile.lifecycle import plan_lifecycle
from converged_bridge.reconcile.status import StatusTiming
from converged_bridge.wire import JOBS, QUEUE_LABEL

DATA = Path(__file__).resolve().parents[1] / "data" / "kueue-0.14"
UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
SITE = KueueSite(default_local_queue="default", shared_volumes=(SharedVolume("/shared"),))
NOW = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)


def plan(step: WorkflowStep, view: KueueView) -> list[Intent]:
    """The controller's whole plan for a Kueue step: the shared lifecycle around the Kueue plans."""
    intents = plan_lifecycle(
        step, running=lambda: plan_kueue_step(step, view), cleanup=lambda: plan_kueue_cleanup(step, view)
    )
    assert intents is not None
    return intents


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())  # type: ignore[no-any-return]


def make_step(
    name: str = "map-7", operator: str = "job", deleting: bool = False, **spec: Any
) -> WorkflowStep:
    resources = {"cpus": 2, "memMiB": 512, "runtimeMinutes": 15, **spec.pop("resources", {})}
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "team-a",
        "uid": UID,
        "generation": 1,
        "finalizers": ["converged.dev/backend-cleanup"],
    }
    if deleting:
        meta["deletionTimestamp"] = NOW.isoformat()
    body: dict[str, Any] = {
        "workflow": {"runId": "run-1", "rule": "map", "jobId": 7},
        "backend": "kueue",
        "operator": operator,
        "image": "localhost/converged/step:local",
        "command": ["python3", "-c", "print('hi')", "$(touch x)"],
        "workingDir": "/shared/wf",
        "resources": resources,
        **spec,
    }
    return WorkflowStep.model_validate({"metadata": meta, "spec": body})


def test_job_is_suspended_queued_owned_and_runs_once() -> None:
    built = build_operator_object(make_step(), SITE)
    job = built.body
    assert (built.kind, built.name) == (JOBS, "map-7")
    assert job["metadata"]["labels"][QUEUE_LABEL] == "default"
    assert job["metadata"]["ownerReferences"][0] | {} == {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "WorkflowStep",
        "name": "map-7",
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    spec = job["spec"]
    assert (spec["suspend"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (
        True,
        1,
        1,
        0,
    )
    assert spec["activeDeadlineSeconds"] == 900
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["command"] == ["python3", "-c", "print('hi')", "$(touch x)"]  # argv: no shell
    # requests only: the quota and the scheduler count them; no memory limit kills the snakemake wrapper
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "512Mi"}}
    assert container["volumeMounts"] == [{"name": "shared-0", "mountPath": "/shared"}]
    # the namespace's claim, never a hostPath (Pod Security baseline and restricted refuse those)
    assert pod["volumes"] == [
        {"name": "shared-0", "persistentVolumeClaim": {"claimName": "converged-shared"}}
    ]


def test_gpu_step_requests_gpus_and_selects_the_model() -> None:
    job = build_operator_object(make_step(resources={"gpus": 2, "gpuModel": "a100"}), SITE).body
    pod = job["spec"]["template"]["spec"]
    # extended resources need limit == request; cpu and memory stay request-only
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert pod["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"converged.dev/gpu-model": "a100"}


def test_names_are_deterministic_dns_labels_within_limits() -> None:
    long = "a" * 200 + ".b"
    name = build_object_name(make_step(name=long))
    assert len(name) <= NAME_MAX and name == build_object_name(make_step(name=long))
    assert name != build_object_name(make_step(name="a" * 200 + ".c"))
    assert all(c.isalnum() or c == "-" for c in name)


def test_other_operators_have_their_shapes() -> None:
    js = build_jobset(make_step(operator="jobset", resources={"nodes": 2, "tasks": 2}), SITE).body
    assert js["spec"]["suspend"] is True and js["spec"]["failurePolicy"] == {"maxRestarts": 0}
    # what JobSet's defaulting webhook would set: its controller dereferences these
    assert js["spec"]["successPolicy"] == {"operator": "All"}
    assert js["spec"]["startupPolicy"] == {"startupPolicyOrder": "AnyOrder"}
    assert js["spec"]["network"]["enableDNSHostnames"] is True
    job = js["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert "suspend" not in job
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 2, 2)
    mpi = build_mpijob(make_step(operator="mpijob", resources={"nodes": 2, "tasks": 4}), SITE).body
    assert mpi["spec"]["runPolicy"]["suspend"] is True and mpi["spec"]["slotsPerWorker"] == 2
    assert mpi["spec"]["launcherCreationPolicy"] == "WaitForWorkersReady"
    launcher_pod = mpi["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]
    launcher = launcher_pod["spec"]["containers"][0]
    # the launcher runs the step's command once; the command launches its ranks with $CONVERGED_MPIRUN
    assert launcher["command"][-4:] == ["python3", "-c", "print('hi')", "$(touch x)"]
    assert launcher["command"][:2] == ["/bin/sh", "-c"] and 'exec "$@"' in launcher["command"][2]
    assert launcher["command"][2].index(WAIT_FOR_WORKERS) < launcher["command"][2].index("exec")
    assert {"name": "CONVERGED_MPIRUN", "value": "mpirun -np 4"} in launcher["env"]
    assert launcher_pod["metadata"]["labels"]["converged.dev/step-uid"] == UID
    worker = mpi["spec"]["mpiReplicaSpecs"]["Worker"]
    assert (
        worker["replicas"] == 2 and worker["template"]["metadata"]["labels"]["converged.dev/step-uid"] == UID
    )
    assert "exec /usr/sbin/sshd -De -p 2222" in worker["template"]["spec"]["containers"][0]["command"][-1]
    assert mpi["spec"]["sshAuthMountPath"] == "/var/run/converged-ssh"
    mc = build_minicluster(make_step(operator="minicluster", resources={"nodes": 2, "tasks": 4}), SITE).body
    assert mc["spec"]["jobLabels"][QUEUE_LABEL] == "default"  # Kueue queues the Job the Flux operator makes
    assert mc["spec"]["containers"][0]["command"] == "python3 -c 'print('\"'\"'hi'\"'\"')' '$(touch x)'"
    assert (mc["spec"]["size"], mc["spec"]["tasks"], mc["spec"]["deadlineSeconds"]) == (2, 4, 900)


def test_plain_job_refuses_multi_node_and_missing_image() -> None:
    with pytest.raises(InvalidStep, match="nodes"):
        build_operator_object(make_step(resources={"nodes": 2, "tasks": 2}), SITE)
    step = make_step()
    no_image = step.model_copy(update={"spec": step.spec.model_copy(update={"image": None})})
    with pytest.raises(InvalidStep, match="image"):
        build_operator_object(no_image, SITE)


def test_pending_workload_gives_kueues_reason() -> None:
    out = map_kueue_status("Job", load("job-pending.json"), load("workload-pending.json"), [])
    assert out.phase is Phase.QUEUED
    assert out.reason is not None and "insufficient unused quota" in out.reason


def test_admitted_workload_without_running_pods_names_the_flavor() -> None:
    out = map_kueue_status("Job", load("job-admitted.json"), load("workload-admitted.json"), [])
    assert (out.phase, out.reason, out.flavors) == (Phase.QUEUED, "Admitted", ("kwok",))


def test_finished_workload_succeeds_with_exit_code_0() -> None:
    out = map_kueue_status(
        "Job", load("job-succeeded.json"), load("workload-finished.json"), [load("pod-succeeded.json")]
    )
    assert (out.phase, out.exit_code) == (Phase.SUCCEEDED, 0)
    assert out.completion_time is not None


def test_failed_pod_gives_exit_code_and_log_tail() -> None:
    out = map_kueue_status(
        "Job", load("job-failed.json"), load("workload-failed.json"), [load("pod-failed.json")]
    )
    assert (out.phase, out.exit_code) == (Phase.FAILED, 3)
    assert out.log_tail == "boom: the real cause\n"
    assert out.reason == "BackoffLimitExceeded"


def test_plan_creates_once_then_tracks_then_deletes() -> None:
    view = KueueView(site=SITE, obj=None, workload=None, pods=[], timing=StatusTiming(now=NOW))
    first = plan(make_step(), view)
    assert isinstance(first[0], CreateObject) and first[0].kind == JOBS
    assert isinstance(first[1], WriteStatus) and first[1].status.phase is Phase.QUEUED
    seen = KueueView(
        site=SITE,
        obj=load("job-failed.json"),
        workload=load("workload-failed.json"),
        pods=[load("pod-failed.json")],
        timing=StatusTiming(now=NOW),
    )
    later = plan(make_step(), seen)
    assert not any(isinstance(i, CreateObject) for i in later)
    status = next(i for i in later if isinstance(i, WriteStatus)).status
    assert (status.phase, status.exit_code, status.log_tail) == (Phase.FAILED, 3, "boom: the real cause\n")
    gone = plan(make_step(deleting=True), seen)
    assert isinstance(gone[0], DeleteObject) and isinstance(gone[-1], RemoveFinalizer)


def test_operator_the_cluster_does_not_serve_is_refused() -> None:
    view = KueueView(
        site=SITE,
        obj=None,
        workload=None,
        pods=[],
        timing=StatusTiming(now=NOW),
        served_kinds=frozenset({"Job"}),
    )
    intents = plan(make_step(operator="minicluster"), view)
    status = next(i for i in intents if isinstance(i, WriteStatus)).status
    assert (status.phase, status.reason) == (Phase.FAILED, "OperatorNotInstalled")
    assert not any(isinstance(i, CreateObject) for i in intents)


def test_kueues_reworded_quota_message_waits_for_the_refresh_interval() -> None:
    job, workload = load("job-pending.json"), load("workload-pending.json")
    first = plan(
        make_step(), KueueView(site=SITE, obj=job, workload=workload, pods=[], timing=StatusTiming(now=NOW))
    )
    stored = next(i for i in first if isinstance(i, WriteStatus)).status
    step = make_step().model_copy(update={"status": stored})
    reworded = copy.deepcopy(workload)  # the next admission attempt counts what is missing anew
    quota = reworded["status"]["conditions"][0]
    assert "2 more needed" in quota["message"]
    quota["message"] = quota["message"].replace("2 more needed", "1 more needed")

    def at(after: float) -> KueueView:
        return KueueView(
            site=SITE,
            obj=job,
            workload=reworded,
            pods=[],
            timing=StatusTiming(
                now=NOW + timedelta(seconds=after),
                written_at=NOW,
                pending_reason_refresh=timedelta(seconds=30),
            ),
        )

    assert plan(step, at(10)) == []
    (write,) = plan(step, at(31))
    assert isinstance(write, WriteStatus)
    assert write.status.reason is not None and "1 more needed" in write.status.reason


def test_pods_run_as_their_namespaces_identity() -> None:
    from dataclasses import replace

    from converged_bridge.backends.kueue.operators.common import RunAs
    from converged_bridge.backends.kueue.unit import map_run_as

    namespaces: list[dict[str, Any]] = [
        {
            "metadata": {
                "name": "alice",
                "annotations": {
                    "converged.dev/run-as-user": "1001",
                    "converged.dev/run-as-group": "1001",
                    "converged.dev/run-as-name": "alice",
                },
            }
        },
        {
            "metadata": {"name": "half", "annotations": {"converged.dev/run-as-user": "1002"}}
        },  # no group: none
        {
            "metadata": {
                "name": "bad",
                "annotations": {"converged.dev/run-as-user": "-1", "converged.dev/run-as-group": "0"},
            }
        },
        {
            "metadata": {
                "name": "root",  # Pod Security restricted refuses runAsUser 0
                "annotations": {"converged.dev/run-as-user": "0", "converged.dev/run-as-group": "0"},
            }
        },
        {"metadata": {"name": "plain"}},
    ]
    alice = RunAs(1001, 1001, "alice")
    assert map_run_as(namespaces) == {"alice": alice}
    site = replace(SITE, run_as=alice)
    pod = build_operator_object(make_step(), site).body["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsUser": 1001,
        "runAsGroup": 1001,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    env = pod["containers"][0]["env"]  # the image has no passwd entry for 1001: getpass reads these
    assert {"name": "USER", "value": "alice"} in env and {"name": "LOGNAME", "value": "alice"} in env
    # no identity: the image's USER, never root
    plain = build_operator_object(make_step(), SITE).body["spec"]["template"]["spec"]["securityContext"]
    assert plain == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    mpi = build_mpijob(make_step(operator="mpijob", resources={"nodes": 2, "tasks": 2}), site).body
    for role in ("Launcher", "Worker"):  # MPI too: ssh and sshd get a passwd entry via nss_wrapper
        assert (
            mpi["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]["securityContext"]["runAsUser"] == 1001
        )


def test_the_mpi_launcher_waits_until_every_worker_of_the_hostfile_resolves(tmp_path: Path) -> None:
    """Run for real: a host that resolves at once is not waited for; one that resolves late (a worker's
    DNS record, published after the pod is Ready) is waited for until it does."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=2\nlate-worker slots=2\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # getent answers for late-worker from the third question on, as cluster DNS does once it has the record
    (bin_dir / "getent").write_text(
        '#!/bin/sh\n[ "$2" = localhost ] && exit 0\n'
        f"n=$(cat {tmp_path}/asked 2>/dev/null || echo 0)\n"
        f'echo $((n + 1)) > {tmp_path}/asked; [ "$n" -ge 2 ]\n'
    )
    (bin_dir / "getent").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "OMPI_MCA_orte_default_hostfile": str(hostfile)}
    cp = subprocess.run(
        ["/bin/sh", "-c", WAIT_FOR_WORKERS + 'exec "$@"', "converged-launcher", "echo", "ranks start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (cp.returncode, cp.stdout) == (0, "ranks start\n"), cp.stderr
    assert (tmp_path / "asked").read_text().strip() == "3"  # asked until it resolved, then no more


def test_a_waiting_step_is_written_once_per_refresh_and_told_only_when_it_runs_and_ends() -> None:
    """Created, then Kueue's Workload pending, then admitted: all Queued, written once (the latest state)
    within the refresh interval, and no Event; Running and the end are written at once, each with one."""
    refresh = timedelta(seconds=30)

    def view(after: float, obj: Any, workload: Any = None, pods: Any = ()) -> KueueView:
        timing = StatusTiming(NOW + timedelta(seconds=after), NOW, refresh)
        if obj is not None:  # the captured Job, as the one this step's plan created
            obj = {**obj, "metadata": {**obj["metadata"], "name": "map-7"}}
        return KueueView(site=SITE, obj=obj, workload=workload, pods=list(pods), timing=timing)

    created = plan(make_step(), view(0, None))
    assert [type(i).__name__ for i in created] == ["CreateObject", "WriteStatus"]  # no Event for Queued
    stored = next(i for i in created if isinstance(i, WriteStatus)).status
    step = make_step().model_copy(update={"status": stored})
    job = load("job-pending.json")
    assert plan(step, view(5, job, load("workload-pending.json"))) == []  # the Workload's name: waits
    assert plan(step, view(9, load("job-admitted.json"), load("workload-admitted.json"))) == []
    (write,) = plan(step, view(31, load("job-admitted.json"), load("workload-admitted.json")))
    assert isinstance(write, WriteStatus)
    assert write.status.backend_ref is not None and write.status.backend_ref.workload
    assert (write.status.reason, write.status.start_time is not None) == ("Admitted", True)

    ended = plan(
        step,
        view(9, load("job-succeeded.json"), load("workload-finished.json"), [load("pod-succeeded.json")]),
    )
    assert [type(i).__name__ for i in ended] == ["WriteStatus", "Emit"]
    assert isinstance(ended[0], WriteStatus) and ended[0].status.phase is Phase.SUCCEEDED
