"""The site's defaults for a namespace, and the preflight that stops a run before anything is
submitted, each problem with its cause and its fix."""

from __future__ import annotations

import stat
from dataclasses import replace

from converged_bridge.api.workflowstep import Backend
from converged_bridge.routing import Decision, RouteDecision
from snakemake_executor_plugin_converged import ExecutorSettings
from snakemake_executor_plugin_converged.plan import PlanEntry
from snakemake_executor_plugin_converged.preflight import PathFacts, RunFacts, UserFacts, check_run
from snakemake_executor_plugin_converged.resources import StepResources
from snakemake_executor_plugin_converged.site import merge_site_defaults, parse_site_defaults

SITE = {
    "data": {
        "image": "localhost/converged/step:local",
        "slurmImage": "/images/step.sif",
        "localQueue": "default",
        "sharedPaths": "/shared,/scratch/=scratch",  # PATH[=CLAIM]: the claim is the pods' concern
        "unknownKey": "ignored",
    }
}
ALICE = UserFacts("alice", 1001, frozenset({1001}))


def entry(rule: str, backend: Backend | None, reason: str = "fits") -> PlanEntry:
    decision = RouteDecision(
        backend=backend,
        decision=Decision.REFUSED if backend is None else Decision.ONLY_FEASIBLE,
        reason=reason,
    )
    return PlanEntry(0, 1, rule, "", StepResources(), decision)


def test_site_defaults_fill_only_what_the_user_left_unset() -> None:
    site = parse_site_defaults(SITE)
    assert site.shared_dirs == ("/shared", "/scratch")
    mine = ExecutorSettings(image="my/image:1")  # given by the user: kept
    merged = merge_site_defaults(mine, site, unset=vars(ExecutorSettings()))
    assert (merged.image, merged.slurm_image, merged.local_queue) == (
        "my/image:1",
        "/images/step.sif",
        "default",
    )
    assert merge_site_defaults(mine, parse_site_defaults(None), unset=vars(ExecutorSettings())) == mine


def test_a_run_that_can_start_has_no_problems() -> None:
    facts = RunFacts(
        namespace="alice",
        working_dir="/shared/users/alice/flow",
        entries=[entry("map", Backend.SLURM), entry("reduce", Backend.KUEUE)],
        slurm_user="alice",
        slurm_user_facts=ALICE,
        shared_dirs=("/shared",),
        dirs=[PathFacts("/shared/users/alice/flow", True, 1001, 1001, stat.S_IFDIR | 0o755)],
    )
    assert check_run(facts) == []


def test_every_problem_is_named_with_its_fix_at_once() -> None:
    facts = RunFacts(
        namespace="default",
        working_dir="/tmp/flow",
        entries=[
            entry("map", None, "converged_backend=slurm: slurm: no SlurmCluster"),
            entry("count", None, "converged_backend=slurm: slurm: no SlurmCluster"),
            entry("plot", None, "kueue: no LocalQueue"),
        ],
        missing_permissions=["create workflowsteps.converged.dev in namespace default"],
        shared_dirs=("/shared",),
    )
    problems = check_run(facts)
    assert len(problems) == 4
    assert "missing permissions: create workflowsteps" in problems[0] and "converged-user" in problems[0]
    assert "rule count, map" in problems[1] and "map namespace default to your Slurm user" in problems[1]
    assert "LocalQueue in namespace default" in problems[2]
    assert "/tmp/flow is not on the shared filesystem (/shared)" in problems[3]


def test_a_directory_the_slurm_user_cannot_write_stops_the_run() -> None:
    base = RunFacts(
        namespace="alice",
        working_dir="/shared/flow",
        entries=[entry("map", Backend.SLURM)],
        slurm_user="alice",
        slurm_user_facts=ALICE,
        shared_dirs=("/shared",),
        dirs=[PathFacts("/shared/flow", True, 0, 0, stat.S_IFDIR | 0o755)],
    )
    (problem,) = check_run(base)
    assert (
        "Slurm user alice (namespace alice) cannot write /shared/flow (owner uid 0, mode drwxr-xr-x)"
        in problem
    )
    group = replace(base, dirs=[PathFacts("/shared/flow", True, 0, 1001, stat.S_IFDIR | 0o775)])
    assert check_run(group) == []  # writable through alice's group
    sticky = replace(base, dirs=[PathFacts("/shared/flow", True, 0, 0, stat.S_IFDIR | 0o1777)])
    assert check_run(sticky) == []
    on_kueue_only = replace(base, entries=[entry("map", Backend.KUEUE)])
    assert check_run(on_kueue_only) == []  # no Slurm step: the Slurm user's access does not matter


def test_grouped_allocations_stop_up_front_when_the_sites_controller_cannot_write_the_directory() -> None:
    """The site's deployed controller hands grouped steps over in the workflow directory: a directory of
    alice's (0755) is not its to write, and the run would wait for ever on WaitingForAllocation."""
    site = parse_site_defaults({"data": {**SITE["data"], "controllerUid": "10001"}})
    assert site.controller_uid == 10001
    assert parse_site_defaults(SITE).controller_uid is None
    merged = merge_site_defaults(ExecutorSettings(), site, unset=vars(ExecutorSettings()))
    assert not hasattr(merged, "controller_uid")  # not a setting
    controller = UserFacts("uid 10001", 10001, frozenset({10001}))
    facts = RunFacts(
        namespace="alice",
        working_dir="/shared/users/alice/flow",
        entries=[entry("map", Backend.SLURM)],
        slurm_user="alice",
        slurm_user_facts=ALICE,
        shared_dirs=("/shared",),
        dirs=[PathFacts("/shared/users/alice/flow", True, 1001, 1001, stat.S_IFDIR | 0o755)],
        spool_writer=controller,
    )
    (problem,) = check_run(facts)
    assert problem.startswith(
        "--converged-group-allocations: the site's controller (uid 10001) cannot write "
        "/shared/users/alice/flow (owner uid 1001, mode drwxr-xr-x)"
    )
    assert "Run without --converged-group-allocations" in problem
    assert check_run(replace(facts, spool_writer=None)) == []  # not grouped, or an embedded controller
    shared = PathFacts("/shared/users/alice/flow", True, 1001, 1001, stat.S_IFDIR | 0o1777)
    assert check_run(replace(facts, dirs=[shared])) == []
