"""Facts read off snakemake's job objects (single jobs and group jobs) and its DAG."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobIdentity:
    rule: str
    jobid: int
    wildcards: Mapping[str, str]
    members: tuple[int, ...] = ()  # the job ids it runs: its own, or a group job's members'


def identify_job(job: Any) -> JobIdentity:
    """Rule, numeric job id and wildcards; a group job is `group-<groupid>` with its first member's id."""
    if job.is_group():
        members = list(job.jobs)
        ids = tuple(sorted(int(j.jobid) for j in members))
        return JobIdentity(rule=f"group-{job.groupid}", jobid=ids[0] if ids else 0, wildcards={}, members=ids)
    wildcards = getattr(job, "wildcards_dict", None) or {}
    return JobIdentity(
        rule=str(job.rule.name),
        jobid=int(job.jobid),
        wildcards={k: str(v) for k, v in wildcards.items()},
        members=(int(job.jobid),),
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


def job_rule_images(job: Any, working_dir: str) -> tuple[tuple[str, str], ...]:
    """(url, path) of each image the job's rules name (snakemake's `container:`), when snakemake runs
    them in it (`--sdm apptainer`): the URL as written, and the absolute path where the job's snakemake
    finds it (the SIF snakemake pulled, or the local image). Empty when the job runs in no image of its
    own. A group job: its members' images, each once."""
    images: dict[str, str] = {}
    for member in list(job.jobs) if job.is_group() else [job]:
        image = getattr(member, "container_img", None)
        if image is None:
            continue
        path = os.path.join(working_dir, str(image.path))  # an absolute path stays as it is
        images.setdefault(os.path.normpath(path), str(image.url))
    return tuple((url, path) for path, url in images.items())


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


def upstream_jobids(dag: Any, job: Any) -> tuple[int, ...]:
    """The ids of the jobs `job` waits for that this executor runs: its dependencies that need to run (or
    ran: after a checkpoint snakemake recomputes what needs to), looking through those snakemake runs
    itself (local jobs); for a group job, its members' dependencies outside the group."""
    members = list(job.jobs) if job.is_group() else [job]
    inside = set(members)
    pending = [dep for member in members for dep in dag.dependencies.get(member, {})]
    seen: set[Any] = set()
    found: set[int] = set()
    while pending:
        dep = pending.pop()
        if dep in seen or dep in inside:
            continue
        seen.add(dep)
        if not (dag.needrun(dep) or dag.finished(dep)):
            continue
        if dep.is_local:
            pending.extend(dag.dependencies.get(dep, {}))
        else:
            found.add(int(dep.jobid))
    return tuple(sorted(found))
