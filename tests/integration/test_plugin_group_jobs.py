"""Issue 16: snakemake's own group jobs (`group:` and `--group-components`) through
`snakemake --executor converged`, on Slurm and on Kueue.

A group job is one WorkflowStep (rule `group-<name>`) whose command runs every member, in one Slurm job
or one Kubernetes Job; the members' outputs appear, a job outside the group is a step of its own.
"""

from __future__ import annotations

import textwrap
import uuid

import pytest

from tests.integration.plugin_support import (
    apply_plugin_cluster,
    apply_plugin_queue,
    new_flow_dir,
    run_snakemake,
    run_steps,
)
from tests.integration.test_plugin_kueue import kueue_args
from tests.integration.test_plugin_slurm import converged_args

pytestmark = pytest.mark.integration

GROUPED = textwrap.dedent(
    """
    rule all:
        input: "final.txt"

    rule first:
        output: "parts/{i}.first"
        group: "chain"
        resources: mem_mb=100, runtime=5
        shell: "echo first {wildcards.i} > {output}"

    rule second:
        input: "parts/{i}.first"
        output: "parts/{i}.second"
        group: "chain"
        resources: mem_mb=100, runtime=5
        shell: "cat {input} > {output}; echo second {wildcards.i} >> {output}"

    rule final:
        input: expand("parts/{i}.second", i=range(2))
        output: "final.txt"
        resources: mem_mb=100, runtime=5
        shell: "cat {input} > {output}"
    """
)


@pytest.fixture(scope="module")
def plugin_env(slurm_identities: dict[str, str]) -> dict[str, str]:
    apply_plugin_cluster(slurm_identities)
    apply_plugin_queue(slurm_identities)
    return slurm_identities


@pytest.mark.parametrize("backend", ["slurm", "kueue"])
def test_snakemakes_group_jobs_run_as_one_step_each(plugin_env: dict[str, str], backend: str) -> None:
    # the two chains are two connected components of group "chain": each is a group job of its own,
    # unless --group-components puts both in one
    for components, expected_groups in (("1", 2), ("2", 1)):
        flow = new_flow_dir(plugin_env, f"plugin-group-jobs-{backend}")
        (flow / "Snakefile").write_text(GROUPED)
        run = f"sm-grp-{uuid.uuid4().hex[:6]}"
        args = converged_args(plugin_env, run) if backend == "slurm" else kueue_args(plugin_env, run)
        cp = run_snakemake(
            plugin_env,
            flow,
            *args,
            f"--group-components=chain={components}",
        )
        assert cp.returncode == 0, cp.stderr[-5000:]
        assert (flow / "final.txt").read_text().split("\n")[:4] == [
            "first 0",
            "second 0",
            "first 1",
            "second 1",
        ]
        steps = run_steps(plugin_env, run)
        rules = sorted(s["spec"]["workflow"]["rule"] for s in steps)
        assert rules == ["final", *["group-chain"] * expected_groups], rules
        for step in steps:
            assert (step["spec"]["backend"], step["status"]["phase"], step["status"]["exitCode"]) == (
                backend,
                "Succeeded",
                0,
            )
