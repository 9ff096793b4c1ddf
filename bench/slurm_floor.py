"""Benchmark (issue 18): the Slurm floor — N container steps by bare sbatch — vs the same N steps as a
Snakefile through `snakemake --executor converged`, side by side in one run, as the site's user.

Both as alice, in a new directory of hers on the shared filesystem, on partition `cpu` of hpc1
(2 nodes, 8 CPUs), each step in the step image's SIF under Apptainer:
- floor: one bash loop submits `sbatch --wrap 'apptainer exec ... step.sif sh -c "echo i > out/i.txt"'`
  N times, then `squeue` once per second until none is left (what a careful script does by hand);
- converged: `snakemake --executor converged -j N` on a Snakefile of N such rules, with no converged
  flags (the site's defaults; the deployed daemon's controller drives the steps).
Makespan: wall time from the first submission (floor) or snakemake's start (converged) to the end.
Where the time goes is read from Slurm's accounting (submit, start, end; 1 s resolution): first and
last submission, queueing, each job's own run, the tail after the last job. Target: converged <= 1.15x
the floor (issue 18).

Grouped allocations (--converged-group-allocations) are not an arm here: the site's deployed controller
cannot write alice's directory, where allocations take their steps (see bench/groups.py, run with the
controller embedded, for grouped against one job per step).

Usage: .venv/bin/python bench/slurm_floor.py [--steps 50] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "examples"))

from makespan import median, slurm_times, wait_for_idle_slurm  # noqa: E402
from site_run import as_user, cluster_env  # noqa: E402

USER = "alice"

SNAKEFILE = """
rule all:
    input: expand("out/{{i}}.txt", i=range({steps}))

rule step:
    output: "out/{{i}}.txt"
    resources: mem_mb=100, runtime=5, converged_backend="slurm", slurm_partition="cpu"
    shell: "echo {{wildcards.i}} > {{output}}"
"""


def new_dir(env: dict[str, str], name: str) -> Path:
    base = Path(env["CONVERGED_SHARED_DIR"]) / "users" / USER
    path = base / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    as_user(USER, base, f"mkdir -p {shlex.quote(path.name)}/out")
    return path


def floor(env: dict[str, str], steps: int) -> tuple[float, list[str], Path]:
    """Bare sbatch of N container steps, then one squeue per second until all are gone."""
    workdir = new_dir(env, "floor")
    sif = env["CONVERGED_STEP_IMAGE_SIF"]
    shared = env["CONVERGED_SHARED_DIR"]
    script = f"""
set -eu
ids=""
for i in $(seq 0 {steps - 1}); do
  id=$(sbatch --parsable --partition=cpu --mem=100M --time=5 --output=/dev/null \\
    --chdir={shlex.quote(str(workdir))} --wrap "apptainer --quiet exec --no-eval --cleanenv \\
    --bind {shlex.quote(shared)} {shlex.quote(sif)} sh -c 'echo $i > out/$i.txt'")
  ids="$ids,$id"
done
ids=${{ids#,}}
echo "$ids" > ids.txt
while [ -n "$(squeue -h -j "$ids" 2>/dev/null)" ]; do sleep 1; done
"""
    (workdir / "floor.sh").write_text(script)
    wait_for_idle_slurm()
    started = time.monotonic()
    cp = as_user(USER, workdir, "bash floor.sh", capture=True)
    elapsed = time.monotonic() - started
    if cp.returncode != 0:
        raise SystemExit(f"floor failed: {cp.stdout}{cp.stderr}")
    done = len(list((workdir / "out").glob("*.txt")))
    if done != steps:
        raise SystemExit(f"floor: {done}/{steps} outputs in {workdir}")
    return elapsed, (workdir / "ids.txt").read_text().strip().split(","), workdir


def converged(env: dict[str, str], steps: int) -> tuple[float, list[str], Path]:
    """The Snakefile through the plugin, pinned to hpc1 as the floor is (the site has a `cpu` partition
    on hpc2 too)."""
    workdir = new_dir(env, "converged")
    (workdir / "Snakefile").write_text(SNAKEFILE.format(steps=steps))
    wait_for_idle_slurm()
    started = time.monotonic()
    flags = "--converged-slurm-cluster=hpc1"
    cp = as_user(USER, workdir, f"snakemake --executor converged {flags} -j {steps} --quiet", capture=True)
    elapsed = time.monotonic() - started
    output = cp.stdout + cp.stderr
    done = len(list((workdir / "out").glob("*.txt")))
    if cp.returncode != 0 or done != steps:
        raise SystemExit(f"converged failed ({cp.returncode}, {done}/{steps}):\n{output[-3000:]}")
    run_id = re.findall(r"converged run (sm-[0-9a-f]+)", output)[-1]
    out = as_user(
        USER, workdir, f"kubectl get wfs -l converged.dev/run={run_id} -o json", capture=True
    ).stdout
    refs = [o["status"]["backendRef"] for o in json.loads(out)["items"]]
    if any(r.get("cluster") != "hpc1" for r in refs):
        raise SystemExit(f"converged ran steps off hpc1: {sorted({r.get('cluster') for r in refs})}")
    ids = [str(r["jobId"]) for r in refs]
    return elapsed, ids, workdir


def where(elapsed: float, ids: list[str]) -> dict[str, float]:
    jobs = slurm_times(ids)
    first_submit = min(j[0] for j in jobs)
    last_end = max(j[2] for j in jobs)
    return {
        "submissions_spread_s": max(j[0] for j in jobs) - first_submit,
        "queued_median_s": median([j[1] - j[0] for j in jobs]),
        "job_run_median_s": median([j[2] - j[1] for j in jobs]),
        "first_submit_to_last_end_s": last_end - first_submit,
        "outside_slurm_s": round(elapsed - (last_end - first_submit), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (both sides run as alice through runuser)")
    env = cluster_env()
    rows = []
    for _ in range(args.rounds):
        f_s, f_ids, f_dir = floor(env, args.steps)
        c_s, c_ids, c_dir = converged(env, args.steps)
        row = {
            "steps": args.steps,
            "floor_s": round(f_s, 1),
            "converged_s": round(c_s, 1),
            "ratio": round(c_s / f_s, 2),
            "floor": where(f_s, f_ids),
            "converged": where(c_s, c_ids),
            "dirs": [str(f_dir), str(c_dir)],
        }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
