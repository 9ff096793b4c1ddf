"""Before anything is submitted: every mistake a user can make that would only show once steps ran,
each said once with its cause and its fix. Pure: facts gathered by the session in, messages out."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from converged_bridge.api.workflowstep import Backend
from snakemake_executor_plugin_converged.plan import PlanEntry


@dataclass(frozen=True)
class PathFacts:
    """A directory as the mapped Slurm user would meet it."""

    path: str
    exists: bool
    owner_uid: int = 0
    group_gid: int = 0
    mode: int = 0


@dataclass(frozen=True)
class UserFacts:
    name: str
    uid: int
    gids: frozenset[int]


@dataclass(frozen=True)
class RunFacts:
    namespace: str
    working_dir: str
    entries: Sequence[PlanEntry]
    missing_permissions: Sequence[str] = ()  # "create workflowsteps.converged.dev in namespace x"
    slurm_user: str | None = None  # the namespace's Slurm user (a SlurmCluster's userMapping), if any
    slurm_user_facts: UserFacts | None = None  # None: that user is unknown on this machine
    shared_dirs: Sequence[str] = ()  # the site's shared filesystem; empty: not known, not checked
    dirs: Sequence[PathFacts] = field(default_factory=tuple)  # the working dir and its .snakemake
    # grouped allocations: who hands the steps over, writing in the working dir (the site's deployed
    # controller, when the site says its uid); None: not grouped, or the controller runs in this process
    spool_writer: UserFacts | None = None


def check_run(facts: RunFacts) -> list[str]:
    """Every problem, each naming its cause and its fix; [] when the run can start."""
    problems: list[str] = []
    if facts.missing_permissions:
        problems.append(
            "missing permissions: "
            + "; ".join(facts.missing_permissions)
            + ". Ask your site admin to bind the converged-user ClusterRole in namespace "
            f"{facts.namespace} (and converged-user-capacity cluster-wide) to you"
        )
    refused = [e for e in facts.entries if e.decision.backend is None]
    if refused:
        by_reason: dict[str, list[str]] = {}
        for e in refused:
            by_reason.setdefault(e.decision.reason, []).append(e.rule)
        for reason, rules in by_reason.items():
            problems.append(
                f"no backend can run rule {', '.join(sorted(set(rules)))}: {reason}{_fix(reason, facts)}"
            )
    on_slurm = any(e.decision.backend == Backend.SLURM for e in facts.entries)
    if facts.shared_dirs and not _under(facts.working_dir, facts.shared_dirs):
        problems.append(
            f"the workflow directory {facts.working_dir} is not on the shared filesystem "
            f"({', '.join(facts.shared_dirs)}): steps on Slurm and Kubernetes would not see it. "
            "Run snakemake from a directory under it"
        )
    elif on_slurm and facts.slurm_user and facts.slurm_user_facts is not None:
        for d in facts.dirs:
            if d.exists and not _writable(d, facts.slurm_user_facts):
                problems.append(
                    f"Slurm user {facts.slurm_user} (namespace {facts.namespace}) cannot write {d.path} "
                    f"(owner uid {d.owner_uid}, mode {stat.filemode(d.mode)}): its steps would fail. "
                    f"Run snakemake as {facts.slurm_user} in a directory of theirs, or make {d.path} "
                    f"writable for {facts.slurm_user}"
                )
    writer = facts.spool_writer
    if writer is not None and facts.dirs and facts.dirs[0].exists and not _writable(facts.dirs[0], writer):
        d = facts.dirs[0]
        problems.append(
            f"--converged-group-allocations: the site's controller ({writer.name}) cannot write {d.path} "
            f"(owner uid {d.owner_uid}, mode {stat.filemode(d.mode)}), where it hands each step to its "
            "allocation (.converged/spool). Run without --converged-group-allocations (each step a job "
            "of its own), or ask your site admin for a shared directory the controller may write"
        )
    return problems


def _fix(reason: str, facts: RunFacts) -> str:
    if "no SlurmCluster" in reason:
        return (
            f". Fix: ask your site admin to map namespace {facts.namespace} to your Slurm user in a "
            "SlurmCluster's userMapping (kubectl get slurmclusters), or run in a namespace that is mapped "
            "(--converged-namespace, or your kubeconfig's context)"
        )
    if "no LocalQueue" in reason:
        return (
            f". Fix: ask your site admin for a Kueue LocalQueue in namespace {facts.namespace}, or name one "
            "with --converged-local-queue"
        )
    if "no container image" in reason:
        return (
            ". Fix: set --converged-image (or ask your site admin for the namespace's converged-site "
            "defaults)"
        )
    return ""


def _under(path: str, roots: Sequence[str]) -> bool:
    p = PurePosixPath(os.path.normpath(path))
    return any(p == PurePosixPath(r) or p.is_relative_to(r) for r in roots)


def _writable(d: PathFacts, user: UserFacts) -> bool:
    if user.uid == 0:
        return True
    if d.owner_uid == user.uid:
        return bool(d.mode & stat.S_IWUSR) and bool(d.mode & stat.S_IXUSR)
    if d.group_gid in user.gids:
        return bool(d.mode & stat.S_IWGRP) and bool(d.mode & stat.S_IXGRP)
    return bool(d.mode & stat.S_IWOTH) and bool(d.mode & stat.S_IXOTH)
