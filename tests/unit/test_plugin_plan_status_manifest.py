"""The plan (table, groups, schedule), the step manifest of a job, what a step's status tells snakemake."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest
from snakemake_interface_common.exceptions import WorkflowError

from converged_bridge.api.workflowstep import Backend, Resources, WorkflowStep
from converged_bridge.routing import (
    CapacityView,
    Decision,
    RouteDecision,
    SiteWeights,
    SlurmClusterView,
    SlurmPartitionView,
)
from snakemake_executor_plugin_converged.manifest import JobFacts, build_step_manifest
from snakemake_executor_plugin_converged.plan import PlanEntry, render_plan
from snakemake_executor_plugin_converged.resources import StepResources
from snakemake_executor_plugin_converged.schedule import PlanSchedule, plan_schedule
from snakemake_executor_plugin_converged.status import State, map_step_outcome

CPU = RouteDecision(
    Backend.SLURM,
    Decision.SHORTEST_WAIT,
    "slurm s/cpu: fits idle",
    slurm_cluster="s",
    slurm_partition="cpu",
    target="s/cpu",
)
GPU = RouteDecision(
    Backend.SLURM,
    Decision.ONLY_FEASIBLE,
    "slurm s/gpu: fits idle",
    slurm_cluster="s",
    slurm_partition="gpu",
    target="s/gpu",
)
KUEUE = RouteDecision(
    Backend.KUEUE,
    Decision.EXPLICIT,
    "kueue team-a/real: fits",
    local_queue="team-a/real",
    target="team-a/real",
)
REFUSED = RouteDecision(None, Decision.REFUSED, "slurm s/gpu: no h100 GPUs")
SMALL = StepResources(shape=Resources(mem_mib=100))
GPU1 = StepResources(shape=Resources(mem_mib=100, gpus=1, gpu_model="a100"))


def entry(level: int, jobid: int, rule: str, res: StepResources, d: RouteDecision, wc: str = "") -> PlanEntry:
    return PlanEntry(level, jobid, rule, wc, res, d)


# the seed's two chains: preprocess (cpu) -> postprocess (cpu) -> analysis (gpu) -> visualization (cpu)
CHAINS = [
    entry(0, 1, "preprocess", SMALL, CPU, "job=1"),
    entry(0, 2, "preprocess", SMALL, CPU, "job=2"),
    entry(1, 3, "postprocess", SMALL, CPU, "job=1"),
    entry(1, 4, "postprocess", SMALL, CPU, "job=2"),
    entry(2, 5, "analysis", GPU1, GPU, "job=1"),
    entry(2, 6, "analysis", GPU1, GPU, "job=2"),
    entry(3, 7, "visualization", SMALL, CPU, "job=1"),
    entry(3, 8, "visualization", SMALL, CPU, "job=2"),
]


UPSTREAM: dict[int, tuple[int, ...]] = {3: (1,), 4: (2,), 5: (3,), 6: (4,), 7: (5,), 8: (6,)}
SITE = CapacityView(
    slurm=(
        SlurmClusterView(
            "s",
            (
                SlurmPartitionView("cpu", nodes=1, cpus_total=2, cpus_idle=2, mem_mib_per_node=1000),
                SlurmPartitionView("gpu", nodes=1, cpus_total=4, gpus_total={"a100": 1}),
            ),
        ),
    )
)


def planned(entries: list[PlanEntry], upstream: dict[int, tuple[int, ...]] = UPSTREAM) -> PlanSchedule:
    return plan_schedule(entries, upstream, SITE, SiteWeights(), max_running=10)


def test_groups_are_consecutive_steps_of_one_shape() -> None:
    plan = planned(list(reversed(CHAINS)))
    assert [(g.name, g.target, g.job_ids) for g in plan.groups] == [
        ("g1", "s/cpu", (1, 2, 3, 4)),
        ("g2", "s/gpu", (5, 6)),
        ("g3", "s/cpu", (7, 8)),
    ]


def test_the_seed_chains_share_the_one_gpu() -> None:
    plan = planned(CHAINS)
    # 1 min per step (none declares a runtime) after 2 s of Slurm start-up; one a100 for both analyses
    assert {j: (e.ready, e.start, e.end) for j, e in plan.schedule.estimates.items()} == {
        1: (0, 2, 62),
        2: (0, 2, 62),
        3: (62, 64, 124),
        4: (62, 64, 124),
        5: (124, 126, 186),
        6: (124, 188, 248),
        7: (186, 188, 248),
        8: (248, 250, 310),
    }
    assert plan.schedule.makespan == 310
    assert plan.usage[("slurm", "s/gpu")].gpu_hours == 2 / 60
    assert plan.annotations([6], [4]) == {
        "converged.dev/depends-on": "4",
        "converged.dev/plan-group": "g2",
        "converged.dev/estimate-ready": "124",
        "converged.dev/estimate-start": "188",
        "converged.dev/estimate-end": "248",
    }
    # a snakemake group job of 5 and 7: from the first ready to the last end, in its first member's group
    assert plan.annotations([5, 7], [3])["converged.dev/estimate-end"] == "248"
    assert plan.annotations([99], []) == {}


def test_plan_table_lists_every_job_with_backend_target_group_estimate_and_reason() -> None:
    entries = [*CHAINS, entry(4, 9, "report", StepResources(), KUEUE), entry(4, 10, "x", GPU1, REFUSED)]
    text = render_plan(entries, planned(entries), run_id="sm-1", namespace="team-a", local_jobs=1)
    lines = text.splitlines()
    assert lines[0] == "converged plan for run sm-1 in namespace team-a: 10 jobs"
    header = lines[2].split()
    assert header == [
        "LEVEL",
        "JOB",
        "RULE",
        "WILDCARDS",
        "BACKEND",
        "TARGET",
        "GROUP",
        "START",
        "END",
        "RUNTIME",
        "BASIS",
        "DECISION",
        "REASON",
    ]
    rows = [line.split(None, 12) for line in lines[3:13]]
    assert {(r[9], r[10]) for r in rows[:9]} == {("1m00s", "assumed")}  # no runtime declared, no history
    rows = [r[:9] + r[11:] for r in rows]
    assert [r[2] for r in rows] == ["preprocess"] * 2 + ["postprocess"] * 2 + ["analysis"] * 2 + [
        "visualization"
    ] * 2 + ["report", "x"]
    assert rows[4][4:10] == ["slurm", "s/gpu", "g2", "2m06s", "3m06s", "OnlyFeasible"]
    assert rows[4][10] == "slurm s/gpu: fits idle"
    assert rows[7][6:9] == ["g3", "4m10s", "5m10s"]
    assert rows[8][4:9] == ["kueue", "team-a/real", "g4", "3s", "1m03s"]
    assert rows[9][4:9] == ["REFUSED", "-", "-", "-", "-"] and "no h100 GPUs" in rows[9][10]
    assert "4 groups of consecutive steps by resource shape:" in text
    first = "  [g1] slurm s/cpu | 1 cpu, 100 MiB | 4 steps, 2s-2m04s: "
    assert first + "preprocess#1, preprocess#2, postprocess#3, postprocess#4" in text
    assert (
        "  [g2] slurm s/gpu | 1 cpu, 100 MiB, 1 gpu a100 | 2 steps, 2m06s-4m08s: analysis#5, analysis#6"
        in text
    )
    assert "and 1 jobs snakemake runs itself" in text
    assert "1 jobs cannot run anywhere" in text
    assert "estimated makespan 5m10s: the DAG list-scheduled by critical path" in text
    assert "snakemake --jobs 10" in text
    assert "runtime not declared: 1 min assumed for 10 jobs (rules analysis, postprocess, preprocess," in text
    assert "capacity unknown, not limited in the estimate: team-a/real" in text
    usage = lines[lines.index("estimated use (resources x estimated running time):") + 1 :]
    assert usage[0].split() == ["BACKEND", "TARGET", "CPU-h", "mem", "GiB-h", "GPU-h"]
    assert usage[1].split() == ["kueue", "team-a/real", "0.017", "0.000", "0.000"]
    assert usage[3].split() == ["slurm", "s/gpu", "0.033", "0.003", "0.033"]
    assert usage[4].split() == ["total", "0.150", "0.013", "0.033"]


def facts(**kw: Any) -> JobFacts:
    base: dict[str, Any] = dict(
        namespace="team-a",
        run_id="sm-1234abcd",
        rule="bwa_map",
        jobid=7,
        attempt=1,
        command="python -m snakemake --target-jobs 'bwa_map:sample=A'",
        working_dir="/shared/wf",
        wildcards={"sample": "A"},
        env={"FOO": "bar"},
    )
    base.update(kw)
    return JobFacts(**base)


def test_manifest_of_a_slurm_step_is_a_valid_workflowstep() -> None:
    res = StepResources(
        shape=Resources(cpus=2, mem_mib=954, runtime_minutes=30), slurm_account="lab", qos="normal"
    )
    m = build_step_manifest(facts(), res, CPU)
    step = WorkflowStep.model_validate(m)
    # "bwa_map" is not a DNS label: the slug gets a digest of the real rule name
    assert step.metadata.name == f"sm-1234abcd-bwa-map-{hashlib.sha256(b'bwa_map').hexdigest()[:6]}-7"
    assert m["metadata"]["labels"] == {"converged.dev/run": "sm-1234abcd", "converged.dev/rule": "bwa_map"}
    assert m["metadata"]["annotations"] == {"converged.dev/rule": "bwa_map"}
    assert m["metadata"]["finalizers"] == ["converged.dev/backend-cleanup"]  # no patch needed to add it
    spec = m["spec"]
    assert spec["workflow"] == {
        "runId": "sm-1234abcd",
        "rule": "bwa_map",
        "jobId": 7,
        "wildcards": {"sample": "A"},
    }
    assert spec["backend"] == "slurm" and spec["route"] == {
        "decision": "ShortestWait",
        "reason": "slurm s/cpu: fits idle",
    }
    assert spec["command"] == ["/bin/sh", "-c", "python -m snakemake --target-jobs 'bwa_map:sample=A'"]
    assert spec["workingDir"] == "/shared/wf" and spec["env"] == [{"name": "FOO", "value": "bar"}]
    assert spec["resources"] == {
        "cpus": 2,
        "memMiB": 954,
        "gpus": 0,
        "nodes": 1,
        "tasks": 1,
        "runtimeMinutes": 30,
    }
    assert spec["slurm"] == {"cluster": "s", "partition": "cpu", "account": "lab", "qos": "normal"}
    assert "kueue" not in spec and "image" not in spec


def test_each_backend_gets_its_own_image() -> None:
    res = StepResources(image="registry/step:1", slurm_image="/images/step.sif")
    assert build_step_manifest(facts(), res, CPU)["spec"]["image"] == "/images/step.sif"
    assert build_step_manifest(facts(), res, KUEUE)["spec"]["image"] == "registry/step:1"
    one = StepResources(image="registry/step:1")
    assert build_step_manifest(facts(), one, CPU)["spec"]["image"] == "registry/step:1"


def test_manifest_carries_the_runs_retention_only_when_asked() -> None:
    assert "ttlSecondsAfterFinished" not in build_step_manifest(facts(), SMALL, CPU)["spec"]
    kept = build_step_manifest(replace(facts(), keep_finished_seconds=3600), SMALL, CPU)
    assert kept["spec"]["ttlSecondsAfterFinished"] == 3600


def test_manifest_of_a_kueue_step_names_its_local_queue() -> None:
    m = build_step_manifest(facts(attempt=2), StepResources(image="img:1"), KUEUE)
    assert m["metadata"]["name"].endswith("-7-a2")
    assert m["spec"]["backend"] == "kueue" and m["spec"]["kueue"] == {"localQueue": "real"}
    assert m["spec"]["image"] == "img:1" and m["spec"]["operator"] == "job" and "slurm" not in m["spec"]


def test_manifest_refuses_a_refused_route_and_invalid_fields_naming_the_rule() -> None:
    with pytest.raises(
        WorkflowError, match=r"rule bwa_map: no backend can run this step: slurm s/gpu: no h100"
    ):
        build_step_manifest(facts(), SMALL, REFUSED)
    with pytest.raises(WorkflowError, match=r"rule bwa_map: cannot build its WorkflowStep: .*command"):
        build_step_manifest(facts(command="x" * 20000), SMALL, CPU)
    with pytest.raises(WorkflowError, match=r"rule bwa_map: environment variable 'BAD NAME': String should"):
        build_step_manifest(facts(env={"BAD NAME": "1"}), SMALL, CPU)


def test_status_outcomes() -> None:
    assert map_step_outcome("s1", None).state == State.FAILED
    assert "was deleted before it finished" in map_step_outcome("s1", None).message
    assert map_step_outcome("s1", {"status": {}}).state == State.ACTIVE
    assert map_step_outcome("s1", {"status": {"phase": "Running"}}).state == State.ACTIVE
    ok = map_step_outcome(
        "s1",
        {
            "status": {
                "phase": "Succeeded",
                "backendRef": {"display": "c/12"},
                "exitCode": 0,
                "logPath": "/l/x.log",
            }
        },
    )
    assert (ok.state, ok.backend_job) == (State.SUCCEEDED, "c/12")
    assert ok.message == "WorkflowStep s1 succeeded, backend job c/12, exit code 0, log /l/x.log"
    failed = map_step_outcome(
        "s1",
        {
            "status": {
                "phase": "Failed",
                "backendRef": {"display": "c/13"},
                "exitCode": 3,
                "reason": "NonZeroExitCode",
                "message": "Slurm job c/13 failed with exit code 3",
                "logPath": "/shared/wf/.converged/logs/x.log",
                "logTail": "the real cause\n",
            }
        },
    )
    assert failed.state == State.FAILED
    assert failed.message.splitlines() == [
        "WorkflowStep s1 failed, backend job c/13, exit code 3, reason NonZeroExitCode: "
        "Slurm job c/13 failed with exit code 3",
        "log: /shared/wf/.converged/logs/x.log",
        "last lines of the log:",
        "the real cause",
    ]
    cancelled = map_step_outcome("s1", {"status": {"phase": "Cancelled", "reason": "CANCELLED"}})
    assert cancelled.state == State.FAILED and "cancelled" in cancelled.message
