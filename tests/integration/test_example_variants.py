"""The variant-calling example (examples/variants) as alice: each tool in its own image, which she built
and pushed to the site registry, the bwa and bcftools-call steps on Slurm under Apptainer, the samtools
steps and the count on Kubernetes, in one run with no converged flags but `--sdm apptainer`.

The reads are simulated with twelve planted SNPs at well-covered positions; every one must be called.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_site import USER, run_example, run_ids, steps_of

pytestmark = pytest.mark.integration

# step -> (backend, the image its rule names: its tool's, or none for the site's step image)
STEPS = {
    "simulate": ("kueue", None),
    "bwa_index": ("slurm", "bwa"),
    "bwa_mem/A": ("slurm", "bwa"),
    "bwa_mem/B": ("slurm", "bwa"),
    "faidx": ("kueue", "samtools"),
    "sort/A": ("kueue", "samtools"),
    "sort/B": ("kueue", "samtools"),
    "index/A": ("kueue", "samtools"),
    "index/B": ("kueue", "samtools"),
    "call": ("slurm", "bcftools"),
    "count": ("kueue", "bcftools"),
}


def tool_of(step: dict[str, Any], registry: str) -> str | None:
    """The tool named by the step's rule image (docker://REGISTRY/alice/TOOL:TAG), or None."""
    urls = [image["url"] for image in step["spec"].get("ruleImages", [])]
    assert len(urls) <= 1, urls
    if not urls:
        return None
    match = re.fullmatch(rf"docker://{re.escape(registry)}/{USER}/(\w+):[0-9a-f]{{12}}", urls[0])
    assert match, urls[0]
    return match[1]


def test_variants_example_calls_every_planted_snp_with_one_image_per_tool_on_both_backends(
    cluster_env: dict[str, str],
) -> None:
    cp, output = run_example("variants")
    assert cp.returncode == 0, output[-5000:]
    (workdir,) = set(re.findall(rf"as {USER}, in (\S+): snakemake", output))
    assert (Path(workdir) / "variants.txt").read_text() == "variants called: 12, planted: 12\n"

    (run_id,) = run_ids(output)
    steps = steps_of(cluster_env, run_id)
    registry = cluster_env["CONVERGED_REGISTRY"]
    assert {k: (s["spec"]["backend"], tool_of(s, registry)) for k, s in steps.items()} == STEPS
    assert all(s["status"]["phase"] == "Succeeded" for s in steps.values())
    # the tools' own logs, written from their images
    assert "[main] CMD: bwa index ref.fa" in (Path(workdir) / "logs/bwa_index.log").read_text()
    assert "[mpileup] 2 samples in 2 input files" in (Path(workdir) / "logs/call.log").read_text()
