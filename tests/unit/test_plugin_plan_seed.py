"""Done-when of the plan as a schedule: the seed's example DAG (examples/chains: two chains of preprocess
(cpu) -> postprocess (cpu) -> analysis (gpu) -> visualization (cpu)), planned by the real snakemake on
the local cluster's captured capacity, prints three groups, the estimated makespan and GPU-hours."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def plan(tmp_path: Path, *args: str) -> list[str]:
    shutil.copy(ROOT / "examples" / "chains" / "Snakefile", tmp_path / "Snakefile")
    flow = ["-s", str(tmp_path / "Snakefile"), "-d", str(tmp_path), "--converged-namespace", "team-a"]
    cp = subprocess.run(
        [sys.executable, "-m", "tests.unit.plan_driver", *flow, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cp.returncode == 0, cp.stderr[-4000:]
    return cp.stdout.splitlines()


def test_the_seed_chains_plan_three_groups_a_makespan_and_gpu_hours(tmp_path: Path) -> None:
    lines = plan(tmp_path, "-j", "10")
    assert lines[0] == "converged plan for run sm-seed in namespace team-a: 8 jobs"
    rows = {(r[2], r[3]): r for r in (line.split(None, 10) for line in lines[3:11])}
    assert {rule for rule, _ in rows} == {"preprocess", "postprocess", "analysis", "visualization"}
    # each chain in turn: 2 s of Slurm start-up, then the rule's runtime (2, 3, 5, 1 min)
    for job in ("job=1", "job=2"):
        assert rows[("preprocess", job)][5:9] == ["converged-plugin/cpu", "g1", "2s", "2m02s"]
        assert rows[("postprocess", job)][5:9] == ["converged-plugin/cpu", "g1", "2m04s", "5m04s"]
        assert rows[("analysis", job)][5:9] == ["converged-plugin/gpu", "g2", "5m06s", "10m06s"]
        assert rows[("visualization", job)][5:9] == ["converged-plugin/cpu", "g3", "10m08s", "11m08s"]
    groups = lines[lines.index("3 groups of consecutive steps by resource shape:") + 1 :][:3]
    assert groups[0].startswith("  [g1] slurm converged-plugin/cpu | 2 cpu, 954 MiB | 4 steps, 2s-5m04s: ")
    assert groups[1].startswith("  [g2] slurm converged-plugin/gpu | 2 cpu, 954 MiB, 1 gpu a100 | 2 steps")
    assert groups[2].startswith("  [g3] slurm converged-plugin/cpu | 2 cpu, 954 MiB | 2 steps")
    makespan = next(line for line in lines if line.startswith("estimated makespan "))
    assert makespan.startswith("estimated makespan 11m08s:") and makespan.endswith("snakemake --jobs 10")
    total = next(line for line in lines if line.lstrip().startswith("total")).split()
    assert total == ["total", "0.733", "0.342", "0.167"]  # CPU-h, memory GiB-h, GPU-h: 2 x 5 min of a GPU
    assert not any(line.startswith("runtime not declared") for line in lines)


def test_jobs_one_at_a_time_take_the_sum(tmp_path: Path) -> None:
    lines = plan(tmp_path, "-j", "1")
    assert any(line.startswith("estimated makespan 22m16s:") for line in lines)
