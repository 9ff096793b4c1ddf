"""Benchmark (issue 7): makespan of a 50-step fan-out of trivial steps on the local Slurm, in one run:
`snakemake --executor converged` versus snakemake-executor-plugin-slurm (from PyPI). Target ratio <= 0.5.

Both run the same Snakefile (50 independent steps writing one line each, mem_mb=100, runtime=5) on
the partition `cpu` (2 nodes, 8 CPUs), one after the other, from fresh directories on the shared
filesystem; makespan is the wall time of the snakemake process, DAG building included.
- converged: embedded controller, `--converged-default-backend slurm`, SlurmCluster `converged-plugin`
  (charliecloud, step image, as alice for namespace team-a), poll interval `--poll` seconds.
- slurm plugin: its own venv (`--slurm-venv`, created with pip when missing), jobs as root on the
  host; once with its settings as shipped, once with `--slurm-plugin-args` (default: first status
  check after 1 s instead of 40 s).
Each run starts on an empty Slurm queue (others share the local cluster).

Usage: .venv/bin/python bench/makespan.py [--steps 50] [--poll 1]
Needs the local cluster up and the test identities applied (run tests/integration once).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.plugin_support import apply_plugin_cluster  # noqa: E402

SNAKEFILE = """
rule all:
    input: expand("out/{{i}}.txt", i=range({steps}))

rule step:
    output: "out/{{i}}.txt"
    resources: mem_mb=100, runtime=5
    shell: "echo {{wildcards.i}} > {{output}}"
"""


def cluster_env() -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "deploy/local/cluster"), "env", "--json"], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def ensure_slurm_plugin(venv: Path) -> Path:
    snakemake = venv / "bin" / "snakemake"
    if not snakemake.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin/pip"), "install", "-q", "snakemake==9.27.1", "snakemake-executor-plugin-slurm"],
            check=True,
        )
    return snakemake


def plugin_version(venv: Path) -> str:
    out = subprocess.run(
        [str(venv / "bin/pip"), "show", "snakemake-executor-plugin-slurm"], capture_output=True, text=True
    ).stdout
    return next((line.split()[-1] for line in out.splitlines() if line.startswith("Version:")), "?")


def wait_for_idle_slurm(limit: float = 900) -> None:
    """Others share the local cluster: start only on an empty Slurm queue, for equal conditions."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True, check=True).stdout
        if not queue.strip():
            return
        time.sleep(5)
    raise SystemExit("the Slurm queue did not empty; figures would not be comparable")


def slurm_times(job_ids: list[str]) -> list[tuple[float, float, float]]:
    """(submit, start, end) epoch seconds of each job, from Slurm's accounting (1 s resolution)."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "Submit,Start,End", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    times = []
    for line in out.splitlines():
        submit, start, end = (datetime.strptime(t, "%Y-%m-%dT%H:%M:%S").timestamp() for t in line.split("|"))
        times.append((submit, start, end))
    return times


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def breakdown(started: float, ended: float, jobs: list[tuple[float, float, float]]) -> str:
    """Where the makespan went, from the jobs' Slurm times: first submission, queueing behind the 8
    CPUs, the job itself, and from the last job's end to snakemake's exit."""
    submits = sorted(j[0] for j in jobs)
    return (
        f"start -> first Slurm submit {submits[0] - started:.0f} s, last {submits[-1] - started:.0f} s; "
        f"submit -> start median {median([j[1] - j[0] for j in jobs]):.0f} s; "
        f"job run median {median([j[2] - j[1] for j in jobs]):.0f} s (Slurm's 1 s resolution); "
        f"last job end -> snakemake exit {ended - max(j[2] for j in jobs):.1f} s"
    )


def converged_job_ids(env: dict[str, str], run_id: str) -> list[str]:
    out = subprocess.run(
        [
            f"{env['CONVERGED_LOCAL_BIN']}/kubectl",
            "get",
            "wfs",
            "-n",
            "team-a",
            "-l",
            f"converged.dev/run={run_id}",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout
    return [str(o["status"]["backendRef"]["jobId"]) for o in json.loads(out)["items"]]


def slurm_plugin_job_ids(log: str) -> list[str]:
    return re.findall(r"SLURM jobid (\d+)", log)


def run(argv: list[str], workdir: Path, env: dict[str, str], steps: int) -> tuple[float, float, float]:
    """Run snakemake; returns its start and end (epoch seconds) and the makespan."""
    wait_for_idle_slurm()
    workdir.mkdir(parents=True)
    workdir.chmod(0o1777)
    (workdir / "Snakefile").write_text(SNAKEFILE.format(steps=steps))
    started, wall = time.monotonic(), time.time()
    with open(workdir / "snakemake.log", "w") as log:
        cp = subprocess.run(
            argv,
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.umask(0),
            timeout=1800,
        )
    elapsed = time.monotonic() - started
    done = len(list((workdir / "out").glob("*.txt"))) if (workdir / "out").exists() else 0
    if cp.returncode != 0 or done != steps:
        tail = (workdir / "snakemake.log").read_text()[-3000:]
        raise SystemExit(f"{argv[0]} failed (rc {cp.returncode}, {done}/{steps} outputs):\n{tail}")
    return wall, wall + elapsed, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--slurm-venv", type=Path, default=Path("/var/cache/converged/slurm-plugin-venv"))
    parser.add_argument(
        "--slurm-plugin-args",
        default="--slurm-init-seconds-before-status-checks 1",
        help="options for a second Slurm plugin run, tuned (the first runs as shipped); '' to skip it",
    )
    args = parser.parse_args()
    env = cluster_env()
    apply_plugin_cluster(env)
    base = Path(env["CONVERGED_SHARED_DIR"]) / "bench-makespan" / uuid.uuid4().hex[:8]
    base.mkdir(parents=True)
    base.parent.chmod(0o1777)
    base.chmod(0o1777)
    run_env = {**os.environ, **env}
    jobs = str(args.steps)
    run_id = f"sm-makespan-{uuid.uuid4().hex[:6]}"

    converged = [
        str(Path(sys.executable).with_name("snakemake")),
        "--executor=converged",
        f"--jobs={jobs}",
        "--converged-namespace=team-a",
        "--converged-default-backend=slurm",
        "--converged-slurm-cluster=converged-plugin",
        "--converged-controller=embedded",
        f"--converged-image={env['CONVERGED_SLURM_IMAGE']}",
        f"--converged-poll-interval={args.poll}",
        f"--converged-run-id={run_id}",
    ]
    slurm_snakemake = ensure_slurm_plugin(args.slurm_venv)
    slurm = [
        str(slurm_snakemake),
        "--executor=slurm",
        f"--jobs={jobs}",
        "--default-resources",
        "slurm_partition=cpu",
        "slurm_account=default",
        *shlex.split(args.slurm_plugin_args),
    ]
    slurm_env = {**run_env, "PATH": f"{args.slurm_venv / 'bin'}:{run_env['PATH']}"}

    c_start, c_end, converged_s = run(converged, base / "converged", run_env, args.steps)
    log = (base / "converged" / "snakemake.log").read_text()
    partitions = {p: log.count(f"slurm converged-plugin/{p} [") for p in ("cpu", "gpu")}
    converged_parts = breakdown(c_start, c_end, slurm_times(converged_job_ids(env, run_id)))
    s_start, s_end, slurm_s = run(slurm, base / "slurm", slurm_env, args.steps)
    slurm_log = (base / "slurm" / "snakemake.log").read_text()
    slurm_parts = breakdown(s_start, s_end, slurm_times(slurm_plugin_job_ids(slurm_log)))
    tuned = shlex.split(args.slurm_plugin_args)
    tuned_s = run([*slurm, *tuned], base / "slurm-tuned", slurm_env, args.steps)[2] if tuned else None
    version = plugin_version(args.slurm_venv)
    print(f"fan-out of {args.steps} trivial steps on the local Slurm (partition cpu: 2 nodes, 8 CPUs)")
    print(f"converged (embedded controller, poll {args.poll:g} s): {converged_s:.1f} s")
    print(f"  converged steps per partition (the router's choice): {partitions}")
    print(f"  {converged_parts}")
    print(f"snakemake-executor-plugin-slurm {version}, as shipped: {slurm_s:.1f} s")
    print(f"  {slurm_parts}")
    print(f"ratio converged / slurm plugin as shipped: {converged_s / slurm_s:.2f} (target <= 0.5)")
    if tuned_s is not None:
        print(f"snakemake-executor-plugin-slurm {version} with {args.slurm_plugin_args}: {tuned_s:.1f} s")
        print(f"ratio converged / tuned slurm plugin: {converged_s / tuned_s:.2f}")
    print(f"logs: {base}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
