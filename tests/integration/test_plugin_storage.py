"""Issue 7, storage: `snakemake --executor converged` with a Snakemake default storage provider.

The workflow's inputs and outputs live in storage (snakemake-storage-plugin-fs, installed in this venv
and in the step image, under a prefix on the shared filesystem); the workflow directory stays on the
shared filesystem for sources and `.snakemake`. One step runs on Slurm (as alice, Apptainer), the
next as a Kubernetes Job through Kueue on the real node: each retrieves its input from storage and
stores its output there, through the provider arguments the plugin passes on.
"""

from __future__ import annotations

import textwrap
import uuid

import pytest

from tests.integration.plugin_support import (
    PLUGIN_NS,
    REAL_QUEUE,
    apply_plugin_cluster,
    apply_plugin_queue,
    new_flow_dir,
    run_snakemake,
    run_steps,
)

pytestmark = pytest.mark.integration

SNAKEFILE = textwrap.dedent(
    """
    rule all:
        input: "result.txt"

    rule shout:
        input: "data.txt"
        output: "upper.txt"
        resources: converged_backend="slurm", mem_mb=100, runtime=5
        shell: "tr a-z A-Z < {input} > {output}"

    rule twice:
        input: "upper.txt"
        output: "result.txt"
        resources: converged_backend="kueue", mem_mb=100, runtime=5
        shell: "cat {input} {input} > {output}"
    """
)


def test_inputs_and_outputs_through_a_default_storage_provider(slurm_identities: dict[str, str]) -> None:
    env = slurm_identities
    apply_plugin_cluster(env)
    apply_plugin_queue(env)
    flow_dir = new_flow_dir(env, "plugin-storage")
    storage = new_flow_dir(env, "plugin-storage-objects")
    (storage / "data.txt").write_text("hello storage\n")
    (flow_dir / "Snakefile").write_text(SNAKEFILE)
    run_id = f"sm-st-{uuid.uuid4().hex[:6]}"
    cp = run_snakemake(
        env,
        flow_dir,
        "--executor=converged",
        f"--converged-namespace={PLUGIN_NS}",
        "--converged-slurm-cluster=converged-plugin",
        f"--converged-local-queue={REAL_QUEUE}",
        "--converged-controller=embedded",
        f"--converged-shared-paths={env['CONVERGED_SHARED_DIR']}",
        f"--converged-image={env['CONVERGED_STEP_IMAGE']}",
        f"--converged-slurm-image={env['CONVERGED_SLURM_IMAGE']}",
        f"--converged-run-id={run_id}",
        "--converged-poll-interval=1",
        "--jobs=4",
        "--default-storage-provider=fs",
        f"--default-storage-prefix={storage}",
    )
    assert cp.returncode == 0, cp.stderr[-6000:]
    assert (storage / "upper.txt").read_text() == "HELLO STORAGE\n"
    assert (storage / "result.txt").read_text() == "HELLO STORAGE\n" * 2
    assert not (flow_dir / "result.txt").exists()  # the output went to storage, not the workflow directory
    backends = {s["spec"]["workflow"]["rule"]: s["spec"]["backend"] for s in run_steps(env, run_id)}
    assert backends == {"shout": "slurm", "twice": "kueue"}
    commands = {s["spec"]["workflow"]["rule"]: s["spec"]["command"][2] for s in run_steps(env, run_id)}
    assert sorted(commands) == ["shout", "twice"]
    for command in commands.values():  # the provider's arguments, passed on to every step
        assert (
            "--default-storage-provider 'fs'" in command
            and f"--default-storage-prefix '{storage}'" in command
        )
