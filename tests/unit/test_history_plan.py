"""The plan learns: a workflow run by the real snakemake (its metadata records), then planned with
`--converged-plan` on the captured capacity, takes its runtimes from those runs; our own store's runs,
which measure the steps themselves, win over snakemake's records and scale with input size."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from converged_bridge.history import RunSample, build_code_hash, build_history_lines
from snakemake_executor_plugin_converged.history import current_user, history_path

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "tests" / "data" / "history" / "Snakefile"


def run_locally(flow: Path) -> None:
    shutil.copy(SNAKEFILE, flow / "Snakefile")
    cp = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "-s", str(flow / "Snakefile"), "-d", str(flow)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cp.returncode == 0, cp.stderr[-3000:]


def plan(flow: Path) -> dict[str, list[str]]:
    """The plan's rows by `rule wildcards`, and its notes under "notes"."""
    args = ["-s", str(flow / "Snakefile"), "-d", str(flow), "--converged-namespace", "team-a", "--forceall"]
    cp = subprocess.run(
        [sys.executable, "-m", "tests.unit.plan_driver", *args, "-j", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cp.returncode == 0, cp.stderr[-3000:]
    lines = cp.stdout.splitlines()
    rows = {f"{r[2]} {r[3]}": r for r in (line.split(None, 12) for line in lines[3:7])}
    return {**rows, "notes": [line for line in lines if line.startswith(("runtimes:", "estimated makespan"))]}


def test_a_second_run_is_planned_from_the_first(tmp_path: Path) -> None:
    run_locally(tmp_path)
    rows = plan(tmp_path)
    assert {k for k in rows if k != "notes"} == {"make s=a", "make s=b", "count s=a", "count s=b"}
    # count sleeps 0.2 s: snakemake recorded about that, not its declared 10 min
    assert rows["count s=a"][9] == "0s" and rows["count s=a"][10].startswith("history(2,")
    assert rows["make s=b"][10].startswith("history(2,")
    assert (
        rows["notes"][1]
        == "runtimes: 4 jobs from their rules' past runs (rules count, make), 0 from declared runtime limits"
    )


def test_without_history_the_declared_runtimes_are_used(tmp_path: Path) -> None:
    shutil.copy(SNAKEFILE, tmp_path / "Snakefile")
    rows = plan(tmp_path)
    assert (rows["count s=a"][9], rows["count s=a"][10]) == ("10m00s", "declared")
    assert rows["notes"][0].startswith("estimated makespan 15m04s:")  # make 5 min, then count 10 min


def test_our_own_runs_win_and_scale_with_input_size(tmp_path: Path) -> None:
    run_locally(tmp_path)  # data/a.txt is 8893 bytes, data/b.txt 38893
    code = build_code_hash("wc -l {input} > {output}; sleep 0.2")
    ours = [
        RunSample("count", code, 10 + size / 1000, ended=float(i), input_bytes=size)
        for i, size in enumerate([5000, 20000, 60000])
    ]
    store = Path(history_path(str(tmp_path), current_user()))
    store.parent.mkdir(parents=True)
    store.write_text(build_history_lines(ours))
    rows = plan(tmp_path)
    assert (rows["count s=a"][9], rows["count s=a"][10]) == ("19s", "history(3,±0%,size)")  # 10 + 8.893
    assert (rows["count s=b"][9], rows["count s=b"][10]) == ("49s", "history(3,±0%,size)")  # 10 + 38.893
    assert rows["make s=a"][10].startswith("history(2,")  # snakemake's records still serve the other rule
