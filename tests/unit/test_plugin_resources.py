"""Per-rule resources of the converged executor: parsed before submission, errors name rule and resource."""

from __future__ import annotations

from typing import Any

import pytest
from snakemake_interface_common.exceptions import WorkflowError

from converged_bridge.api.workflowstep import Backend, Operator
from converged_bridge.routing import Preference
from snakemake_executor_plugin_converged.resources import (
    ResourceParser,
    parse_job_resources,
    parse_planned_resources,
)


def parse(resources: dict[str, Any], threads: int = 1, **kw: Any) -> Any:
    return parse_job_resources("align", resources, threads=threads, **kw)


def test_snakemake_defaults_and_threads_give_a_one_node_step() -> None:
    r = parse(
        {"_cores": 4, "_nodes": 1, "mem_mb": 1000, "mem_mib": 954, "disk_mb": 1000, "tmpdir": "/tmp"}, 4
    )
    assert (r.shape.cpus, r.shape.mem_mib, r.shape.gpus, r.shape.nodes, r.shape.tasks, r.mpi) == (
        4,
        954,
        0,
        1,
        1,
        False,
    )
    assert r.preference == Preference.AUTO and r.image is None and r.shape.runtime_minutes is None


def test_every_converged_resource_is_read() -> None:
    r = parse(
        {
            "converged_backend": "Kueue",
            "converged_operator": "mpijob",
            "converged_image": "ghcr.io/x/y:1",
            "converged_local_queue": "real",
            "slurm_partition": "gpu",
            "slurm_account": "lab",
            "qos": "normal",
            "gpu": 2,
            "gpu_model": "a100",
            "nodes": 2,
            "tasks": 8,
            "mpi": "srun",
            "runtime": 90,
            "mem_mb": 2000,
            "cpus_per_task": 3,
        },
        threads=1,
    )
    assert r.preference == Preference.KUEUE and r.operator == Operator.MPIJOB
    assert (r.image, r.local_queue, r.slurm_partition, r.slurm_account, r.qos) == (
        "ghcr.io/x/y:1",
        "real",
        "gpu",
        "lab",
        "normal",
    )
    assert (
        r.shape.gpus,
        r.shape.gpu_model,
        r.shape.nodes,
        r.shape.tasks,
        r.mpi,
        r.shape.runtime_minutes,
        r.shape.cpus,
    ) == (
        2,
        "a100",
        2,
        8,
        True,
        90,
        3,
    )
    assert r.shape.mem_mib == 1908  # 2000 MB in MiB, rounded up
    request = r.request("align", "team-a", "site")
    assert request.local_queue == "team-a/real" and request.has_image and request.slurm_cluster == "site"


def test_slurm_plugin_gpu_form_model_colon_count() -> None:
    r = parse({"gpu": "a100:2"})
    assert (r.shape.gpus, r.shape.gpu_model) == (2, "a100")


def test_settings_defaults_apply_and_rules_override_them() -> None:
    r = parse({}, default_backend=Preference.SLURM, default_image="img", default_local_queue="q")
    assert (r.preference, r.image, r.local_queue) == (Preference.SLURM, "img", "q")
    r = parse({"converged_backend": "auto", "converged_image": "other"}, default_backend=Preference.SLURM)
    assert (r.preference, r.image) == (Preference.AUTO, "other")


def test_the_most_specific_image_wins_per_backend() -> None:
    run: dict[str, Any] = {"default_image": "reg/step:1", "default_slurm_image": "/img/step"}
    r = parse({}, **run)
    assert (r.image_for(Backend.KUEUE), r.image_for(Backend.SLURM)) == ("reg/step:1", "/img/step")
    r = parse({"converged_image": "reg/other:2"}, **run)  # the rule's image beats the run's Slurm image
    assert (r.image_for(Backend.KUEUE), r.image_for(Backend.SLURM)) == ("reg/other:2", "reg/other:2")
    r = parse({"converged_image": "reg/other:2", "converged_slurm_image": "/img/other.sif"}, **run)
    assert (r.image_for(Backend.KUEUE), r.image_for(Backend.SLURM)) == ("reg/other:2", "/img/other.sif")
    assert parse({}, default_image="reg/step:1").image_for(Backend.SLURM) == "reg/step:1"


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"converged_backend": "lsf"}, "resource converged_backend='lsf': must be one of slurm, kueue, auto"),
        ({"converged_operator": "pod"}, "converged_operator='pod': must be one of job, jobset, mpijob"),
        ({"converged_backed": "slurm"}, "unknown resource 'converged_backed'"),
        ({"slurm_partiton": "gpu"}, "unknown resource 'slurm_partiton'"),
        ({"gpu": -1}, "resource gpu=-1: must be an integer >= 0"),
        ({"gpu": "many"}, "resource gpu='many': must be an integer >= 0"),
        ({"gpu": "a100:x"}, "must be a count or MODEL:COUNT"),
        ({"gpu": "h100:1", "gpu_model": "a100"}, "names model 'h100' but gpu_model is 'a100'"),
        ({"gpu_model": "a100"}, "resource gpu_model='a100': needs gpu >= 1"),
        ({"gpu": 1, "gpu_model": "a 100"}, "gpu_model='a 100': must be a GPU model name"),
        ({"nodes": 0}, "resource nodes=0: must be an integer >= 1"),
        ({"nodes": True}, "resource nodes=True: must be an integer >= 1"),
        ({"nodes": 4, "tasks": 2}, "resource tasks=2: must be at least nodes (4)"),
        ({"runtime": "1h"}, "resource runtime='1h': must be an integer >= 1"),
        ({"mpi": "maybe"}, "resource mpi='maybe': must be true/false or a launcher"),
        ({"mpi": True, "converged_operator": "job"}, "an MPI step needs mpijob or minicluster"),
        (
            {"slurm_partition": "gpu;rm -rf /"},
            "slurm_partition='gpu;rm -rf /': must be a Slurm partition name",
        ),
        ({"qos": "hi\nlo"}, "resource qos='hi\\nlo': must be a Slurm QOS name"),
        ({"slurm_account": 7}, "resource slurm_account=7: must be a Slurm account name"),
        ({"converged_image": "--privileged"}, "converged_image='--privileged': must be a container image"),
        ({"converged_slurm_image": ""}, "converged_slurm_image='': must be a container image"),
        ({"converged_local_queue": "Real Queue"}, "must be a LocalQueue name"),
        ({"cpus_per_task": 0}, "resource cpus_per_task=0: must be an integer >= 1"),
        ({"mem_mb": -5}, "resource mem_mb=-5: must be an integer >= 1"),
    ],
)
def test_malformed_or_unknown_values_name_the_rule_and_the_resource(
    resources: dict[str, Any], message: str
) -> None:
    with pytest.raises(WorkflowError) as info:
        parse(resources)
    assert str(info.value).startswith("rule align:")
    assert message in str(info.value)


def test_other_resource_names_belong_to_snakemake_or_the_workflow_and_are_ignored() -> None:
    assert parse({"load": 50, "disk_mib": 3, "constraint": "haswell"}).shape.cpus == 1


def test_numbers_given_as_strings_are_accepted() -> None:
    r = parse({"gpu": "1", "nodes": "2", "tasks": "4", "runtime": "30", "mpi": "false"})
    assert (r.shape.gpus, r.shape.nodes, r.shape.tasks, r.shape.runtime_minutes, r.mpi) == (
        1,
        2,
        4,
        30,
        False,
    )


def test_shape_names_what_distinguishes_steps() -> None:
    assert parse({"mem_mb": 1000}).describe() == "1 cpu, 954 MiB"
    both = parse({}, default_image="reg/step:1", default_slurm_image="/img/step")
    assert both.describe(Backend.SLURM) == "1 cpu, image /img/step"
    assert both.describe(Backend.KUEUE) == "1 cpu, image reg/step:1"
    assert (
        parse({"gpu": "a100:1", "tasks": 4, "mpi": 1}, threads=2).describe()
        == "2 cpu x 4 tasks, 1 gpu a100, mpi"
    )


def test_the_run_parser_parses_each_distinct_job_once_and_still_refuses_bad_values() -> None:
    parse = ResourceParser(default_image="img")
    a = parse("align", {"mem_mb": 1000, "runtime": 10}, threads=2)
    assert parse("align", {"runtime": 10, "mem_mb": 1000}, threads=2) is a  # same resources, any order
    assert parse("align", {"mem_mb": 1000, "runtime": 10}, threads=4) is not a
    assert a.image_for(Backend.KUEUE) == "img"
    for _ in range(2):  # a refusal is not remembered as a success
        with pytest.raises(WorkflowError, match="rule align: resource gpu='x'"):
            parse("align", {"gpu": "x"}, threads=1)
    listed = parse("align", {"mem_mb": 1000, "converged_image": "docker://x", "tags": ["a"]}, threads=1)
    assert listed.image_for(Backend.KUEUE) == "docker://x"  # unhashable value: parsed as it is


def test_the_plan_leaves_out_what_is_not_known_yet_and_lists_it() -> None:
    tbd = "<TBD>"  # snakemake's TBDString prints and compares as this
    r = parse_planned_resources(
        "align",
        {"mem_mb": tbd, "mem_mib": tbd, "mem": tbd, "converged_backend": tbd, "runtime": 5, "gpu": 1},
        threads=None,
    )
    assert r.pending == ("converged_backend", "mem_mb", "threads")
    assert (r.shape.cpus, r.shape.mem_mib, r.shape.gpus, r.shape.runtime_minutes) == (1, None, 1, 5)
    assert r.preference == Preference.AUTO
    assert r.describe() == "1 cpu, 1 gpu, converged_backend, mem_mb, threads not known yet"
    known = parse_planned_resources("align", {"mem_mb": 1000}, threads=2)
    assert known.pending == () and known == parse({"mem_mb": 1000}, threads=2)
    with pytest.raises(WorkflowError, match="rule align: resource gpu='x'"):  # known values still checked
        parse_planned_resources("align", {"gpu": "x", "mem_mb": tbd}, threads=1)


def test_a_value_still_not_known_when_the_job_is_submitted_fails_naming_the_rule() -> None:
    with pytest.raises(WorkflowError) as info:
        parse({"mem_mb": "<TBD>", "mem_mib": "<TBD>", "runtime": 5})
    assert str(info.value).startswith("rule align: resource mem_mb='<TBD>': still not known when its job")
    parser = ResourceParser()
    assert parser.planned("align", {"mem_mb": "<TBD>"}, threads=1).pending == ("mem_mb",)
    with pytest.raises(WorkflowError, match="rule align: resource mem_mb='<TBD>'"):
        parser("align", {"mem_mb": "<TBD>"}, threads=1)  # the same values, now at submission
