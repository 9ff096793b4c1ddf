"""A job's own snakemake leaves its temporary outputs to the main snakemake: the real snakemake run as a
step runs it (the arguments a remote executor gives it), on snakemake's test_issue894 workflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from snakemake_executor_plugin_converged.command import build_job_args

# snakemake 9.27.1's tests/test_issue894/Snakefile (MIT): the default target writes a temporary output
ISSUE894 = """
onsuccess:
    assert not os.path.exists("b")

rule a:
    output: "a", temp("b")
    shell: "touch a b"
"""


def run_as_step(workdir: Path, *extra: str) -> None:
    """Job `a` as the main snakemake hands it to a step (b is unneeded by any other job)."""
    (workdir / "Snakefile").write_text(ISSUE894)
    args = ["--target-jobs", "a:", "--allowed-rules", "a", "--cores", "1", "--attempt", "1"]
    args += ["--force-use-threads", "--unneeded-temp-files", "b", "--force", "--nolock", "--no-hooks"]
    cp = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", "Snakefile", *args, "--mode", "remote", *extra],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cp.returncode == 0, cp.stderr[-4000:]


def test_the_steps_snakemake_keeps_a_temporary_output_for_the_main_one(tmp_path: Path) -> None:
    alone, ours = tmp_path / "alone", tmp_path / "ours"
    alone.mkdir()
    ours.mkdir()
    run_as_step(alone)
    assert (alone / "a").exists() and not (alone / "b").exists()  # what the main snakemake then missed
    run_as_step(ours, *build_job_args(is_group=False))
    assert (ours / "a").exists() and (ours / "b").exists()


def test_a_group_jobs_snakemake_handles_its_members_temporary_files_itself() -> None:
    assert build_job_args(is_group=True) == []
