"""Issue 16 part 2: `snakemake --executor converged --converged-group-allocations` on the local Slurm.

The seed's chains (examples/chains: two chains of preprocess -> postprocess -> analysis (GPU) ->
visualization) run in three StepAllocations of 4, 2 and 2 steps — the cpu steps before the GPU, the GPU
steps, the cpu steps after it —, each one Slurm batch job whose steps are job steps (`srun`, named
`<rule>-<jobid>`) that sacct shows, each step keeping its own WorkflowStep. The controller runs embedded
in snakemake, as in test_plugin_slurm.
"""

from __future__ import annotations

import json
import shutil
import uuid

import pytest

from tests.integration.conftest import ROOT, kubectl
from tests.integration.groups_support import job_steps
from tests.integration.plugin_support import (
    apply_plugin_cluster,
    new_flow_dir,
    run_snakemake,
    run_steps,
)
from tests.integration.test_plugin_slurm import NS, converged_args

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plugin_env(slurm_identities: dict[str, str]) -> dict[str, str]:
    apply_plugin_cluster(slurm_identities)
    return slurm_identities


def test_chains_run_in_three_allocations_each_step_a_slurm_job_step(plugin_env: dict[str, str]) -> None:
    flow_dir = new_flow_dir(plugin_env, "plugin-tests")
    shutil.copy(ROOT / "examples/chains/Snakefile", flow_dir / "Snakefile")
    run_id = f"sm-chains-{uuid.uuid4().hex[:6]}"
    args = converged_args(plugin_env, run_id, "--converged-group-allocations")
    cp = run_snakemake(plugin_env, flow_dir, *args, timeout=600)
    assert cp.returncode == 0, cp.stderr[-6000:]
    for job in (1, 2):
        lines = (flow_dir / f"visualization/{job}.txt").read_text().splitlines()
        assert [line.split()[0] for line in lines] == [
            "preprocess",
            "postprocess",
            "analysis",
            "visualization",
        ]
        assert lines[2].startswith(f"analysis {job} on GPU ") and lines[2] != f"analysis {job} on GPU "

    out = kubectl(plugin_env, "get", "alloc", "-n", NS, "-l", f"converged.dev/run={run_id}", "-o", "json")
    allocations = {a["metadata"]["name"]: a for a in json.loads(out)["items"]}
    steps = run_steps(plugin_env, run_id)
    members: dict[str, list[str]] = {name: [] for name in allocations}
    for step in steps:
        status, labels = step["status"], step["metadata"]["labels"]
        assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
        group = labels["converged.dev/group"]
        assert status["backendRef"]["allocation"] == group
        members[group].append(f"{step['spec']['workflow']['rule']}-{step['spec']['workflow']['jobId']}")
    assert sorted(len(m) for m in members.values()) == [2, 2, 4]
    rules = sorted(sorted({name.rsplit("-", 1)[0] for name in m}) for m in members.values())
    assert rules == [["analysis"], ["postprocess", "preprocess"], ["visualization"]]

    jobs = set()
    for name, alloc in allocations.items():
        status = alloc["status"]
        assert status["phase"] == "Succeeded", status
        counts = {k: status["steps"].get(k, 0) for k in ("total", "running", "finished", "failed")}
        size = len(members[name])
        assert counts == {"total": size, "running": 0, "finished": size, "failed": 0}
        ref = status["backendRef"]
        jobs.add(ref["jobId"])
        for step in steps:
            if step["metadata"]["labels"]["converged.dev/group"] == name:
                assert step["status"]["backendRef"]["jobId"] == ref["jobId"]  # its allocation's job
        # every member ran as a job step of the allocation's one batch job, and completed there
        ran = job_steps(ref["jobId"])
        assert {m: ran.get(m) for m in members[name]} == dict.fromkeys(members[name], ("COMPLETED", "0:0"))
        gpus = alloc["spec"]["resources"].get("gpus", 0)
        assert (gpus, alloc["spec"]["slurm"]["partition"]) == (
            (1, "gpu") if "analysis" in members[name][0] else (0, "cpu")
        )
    assert len(jobs) == 3  # three Slurm jobs for eight steps
