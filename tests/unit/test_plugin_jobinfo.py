"""What a step waits for, read off snakemake's DAG, and the plan's annotations on its WorkflowStep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from converged_bridge.api.workflowstep import WorkflowStep
from snakemake_executor_plugin_converged.jobinfo import identify_job, upstream_jobids
from snakemake_executor_plugin_converged.manifest import JobFacts, build_step_manifest
from tests.unit.test_plugin_plan_status_manifest import CPU, SMALL


@dataclass(eq=False)
class Job:
    """The part of snakemake's Job (and GroupJob) that jobinfo reads."""

    jobid: int
    is_local: bool = False
    jobs: list[Job] = field(default_factory=list)
    groupid: str = ""

    def is_group(self) -> bool:
        return bool(self.jobs)


class Dag:
    def __init__(
        self, deps: dict[Job, list[Job]], needrun: set[Job], finished: frozenset[Job] = frozenset()
    ) -> None:
        self.dependencies = {job: {up: {"file"} for up in ups} for job, ups in deps.items()}
        self._needrun = needrun
        self._finished = finished

    def needrun(self, job: Any) -> bool:
        return job in self._needrun

    def finished(self, job: Any) -> bool:
        return job in self._finished


def test_upstream_through_local_jobs_and_without_jobs_that_need_not_run() -> None:
    a, b, done, local, c = Job(1), Job(2), Job(3), Job(4, is_local=True), Job(5)
    dag = Dag({c: [local, done], local: [a, b], b: [a]}, needrun={a, b, local, c})
    assert upstream_jobids(dag, c) == (1, 2)
    assert upstream_jobids(dag, a) == ()
    # after a checkpoint, snakemake's needrun holds only what is left; what ran is still upstream
    later = Dag({c: [local, done], local: [a, b], b: [a]}, needrun={local, c}, finished=frozenset({a, b}))
    assert upstream_jobids(later, c) == (1, 2)


def test_a_group_job_waits_for_its_members_upstream_outside_the_group() -> None:
    a, b, c = Job(1), Job(2), Job(3)
    group = Job(0, jobs=[b, c], groupid="g")
    dag = Dag({b: [a], c: [b]}, needrun={a, b, c})
    assert upstream_jobids(dag, group) == (1,)
    ident = identify_job(group)
    assert (ident.rule, ident.jobid, ident.members) == ("group-g", 2, (2, 3))


def test_the_plan_annotations_go_on_the_step_and_the_rule_annotation_stays() -> None:
    notes = {"converged.dev/depends-on": "1,2", "converged.dev/rule": "not-this"}
    facts = JobFacts(
        namespace="team-a",
        run_id="sm-1",
        rule="r",
        jobid=3,
        attempt=1,
        command="true",
        working_dir="/shared",
        annotations=notes,
    )
    manifest = build_step_manifest(facts, SMALL, CPU)
    assert manifest["metadata"]["annotations"] == {
        "converged.dev/depends-on": "1,2",
        "converged.dev/rule": "r",
    }
    WorkflowStep.model_validate(manifest)
