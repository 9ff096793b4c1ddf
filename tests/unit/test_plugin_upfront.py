"""The plan calls none of the workflow's own functions and carries what it cannot know yet: the real
snakemake and the real plugin plan a real DAG (`tests.unit.plan_driver`, the cluster's answers captured)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# snakemake 9.27.1's tests/test_lazy_resources/Snakefile (MIT, its assertion's message wrapped)
LAZY = """
import os

rule all:
    input:
        "results/bar.txt",

rule foo:
    output:
        "results/foo.txt"
    shell:
        "touch {output}"

def get_resources(wc):
    assert os.path.isfile("results/foo.txt"), (
        "bug: resource function is not evaluated in a lazy way, just before job execution"
    )
    return os.path.getsize("results/foo.txt")

rule bar:
    input:
        "results/foo.txt"
    output:
        "results/bar.txt"
    resources:
        test=get_resources
    shell:
        "touch {output}"
"""

# b's memory is an expression of its input, which a writes; c's threads and runtime are functions
PENDING = """
def threads_of(wildcards):
    open("called", "w").close()
    return 2

rule all:
    input: "c.txt"

rule a:
    output: "a.txt"
    shell: "echo a > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    shell: "cat {input} > {output}"

rule c:
    input: "b.txt"
    output: "c.txt"
    threads: threads_of
    resources:
        runtime=lambda wildcards, input: 3,
        mem_mb=500,
    shell: "cat {input} > {output}"
"""


def plan(tmp_path: Path, snakefile: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "Snakefile").write_text(snakefile)
    flow = ["-s", str(tmp_path / "Snakefile"), "-d", str(tmp_path), "--converged-namespace", "team-a"]
    return subprocess.run(
        [sys.executable, "-m", "tests.unit.plan_driver", *flow, "-j", "4", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_snakemakes_lazy_resource_function_is_not_called_by_the_plan(tmp_path: Path) -> None:
    cp = plan(tmp_path, LAZY)
    assert cp.returncode == 0, cp.stderr[-4000:]
    rows = [line.split() for line in cp.stdout.splitlines()[3:5]]
    assert sorted(row[2] for row in rows) == ["bar", "foo"]
    assert not any(line.startswith("not known yet") for line in cp.stdout.splitlines())  # not ours


def test_values_not_known_yet_are_routed_without_and_listed(tmp_path: Path) -> None:
    cp = plan(
        tmp_path,
        PENDING,
        "--default-resources",
        "mem_mb=max(2*input.size_mb, 100)",
        "converged_backend=slurm",
    )
    assert cp.returncode == 0, cp.stderr[-4000:]
    lines = cp.stdout.splitlines()
    rows = {row[2]: row for row in (line.split() for line in lines[3:6])}
    assert {rule: rows[rule][4] for rule in rows} == {"a": "slurm", "b": "slurm", "c": "slurm"}
    note = next(line for line in lines if line.startswith("not known yet"))
    assert note.startswith("not known yet for 2 jobs, evaluated when each is submitted")
    assert note.endswith("routed and estimated without them: b: mem_mb; c: runtime, threads")
    assert "| 1 cpu, 96 MiB |" in cp.stdout  # a's memory: its expression, evaluated (no input: 100 MB)
    assert not (tmp_path / "called").exists()  # c's threads function was not called
