"""Facts read off snakemake's job objects (single jobs and group jobs) and its DAG."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobIdentity:
    rule: str
    jobid: int
    wildcards: Mapping[str, str]


def identify_job(job: Any) -> JobIdentity:
    """Rule, numeric job id and wildcards; a group job is `group-<groupid>` with its first member's id."""
    if job.is_group():
        members = list(job.jobs)
        return JobIdentity(
            rule=f"group-{job.groupid}",
            jobid=min(int(j.jobid) for j in members) if members else 0,
            wildcards={},
        )
    wildcards = getattr(job, "wildcards_dict", None) or {}
    return JobIdentity(
        rule=str(job.rule.name), jobid=int(job.jobid), wildcards={k: str(v) for k, v in wildcards.items()}
    )


def job_threads(job: Any) -> int:
    try:
        return int(job.threads)
    except (TypeError, ValueError):
        return 1


def job_resources(job: Any) -> Mapping[str, Any]:
    """The job's evaluated resources as a plain mapping."""
    resources = job.resources
    items: Iterable[tuple[str, Any]] = resources.items() if hasattr(resources, "items") else []
    return dict(items)


def dag_levels(dag: Any) -> tuple[list[list[Any]], int]:
    """The jobs this executor will run, by topological level (level 0 first), and how many jobs
    snakemake runs itself (localrules and rules without a command)."""
    needrun = set(dag.needrun_jobs())
    if not needrun:
        return [], 0
    levels = [
        sorted((j for j in layer if not j.is_local), key=lambda j: int(j.jobid))
        for layer in dag.toposorted(jobs=needrun)
    ]
    return [level for level in levels if level], sum(1 for j in needrun if j.is_local)
