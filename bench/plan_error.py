"""Benchmark (issue 26): how far the plan is from the run, on a workflow's 1st, 2nd, ... runs, as a user of
the local site with no converged flags (the site's defaults, its deployed controller).

For each workflow (examples/hybrid; a 60-step map -> reduce fan-out whose map steps sleep in proportion
to their input size), in one new directory of the user's on the shared filesystem: `--runs` runs of
`snakemake --executor converged -j JOBS --forceall`, one after the other, so every run runs every step
and the history (`.snakemake/converged/history/`) grows by one run each time. Each run's end-of-run
summary gives the plan's makespan (its estimate, as written on the steps) and the measured one; the
error is (estimate - measure) / measure.

The user's snakemake is the site's (its venv); the plugin and bridge code come from `--code` (a copy of
this checkout's `bridge/` and `plugin/` readable by the user, put first on PYTHONPATH).

Usage: .venv/bin/python bench/plan_error.py [--user alice] [--runs 5] [--jobs 8] [--code /tmp/converged-code]
Run as root; needs the local cluster up (cluster up).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FANOUT = """
N = 30
rule all:
    input: "total.txt"

rule make:
    output: "data/{i}.txt"
    resources: mem_mb=100, runtime=5, converged_backend="slurm"
    shell: "head -c $(( ({wildcards.i} % 4 + 1) * 100000 )) /dev/zero > {output}"

rule map:
    input: "data/{i}.txt"
    output: "map/{i}.txt"
    resources: mem_mb=100, runtime=5, converged_backend="slurm"
    shell: "sleep $(( $(stat -c %s {input}) / 100000 )); echo {wildcards.i} > {output}"

rule total:
    input: expand("map/{i}.txt", i=range(N))
    output: "total.txt"
    resources: mem_mb=100, runtime=5, converged_backend="slurm"
    shell: "cat {input} | wc -l > {output}"
"""


def cluster_env() -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "deploy/local/cluster"), "env", "--json"], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def as_user(user: str, workdir: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-l", user, "-c", f"cd {shlex.quote(str(workdir))} && {command}"],
        text=True,
        capture_output=True,
        check=False,
    )


def copy_code(dest: Path) -> None:
    """This checkout's packages, readable by every user."""
    if dest.exists():
        shutil.rmtree(dest)
    for top, package in (("bridge", "converged_bridge"), ("plugin", "snakemake_executor_plugin_converged")):
        shutil.copytree(ROOT / top / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def new_dir(env: dict[str, str], user: str, name: str, snakefile: str) -> Path:
    base = Path(env["CONVERGED_SHARED_DIR"]) / "users" / user
    run = base / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    as_user(user, base, f"mkdir {shlex.quote(run.name)}")
    (run / "Snakefile").write_text(snakefile)
    shutil.chown(run / "Snakefile", user, user)
    return run


SECONDS = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def seconds(text: str) -> float:
    m = SECONDS.match(text)
    if not m or text == "-":
        raise ValueError(text)
    h, mi, s = (int(g or 0) for g in m.groups())
    return 3600 * h + 60 * mi + s


def makespans(output: str) -> tuple[float, float]:
    m = re.search(r"makespan: estimated (\S+), measured (\S+)", output)
    if not m:
        raise SystemExit("no end-of-run summary in the output:\n" + output[-3000:])
    return seconds(m.group(1)), seconds(m.group(2))


def bench(user: str, name: str, snakefile: str, runs: int, jobs: int, code: Path) -> list[dict[str, object]]:
    env = cluster_env()
    workdir = new_dir(env, user, name, snakefile)
    rows = []
    for n in range(1, runs + 1):
        cp = as_user(
            user,
            workdir,
            f"PYTHONPATH={shlex.quote(str(code))} snakemake --executor converged -j {jobs} --forceall",
        )
        output = cp.stdout + cp.stderr
        if cp.returncode != 0:
            raise SystemExit(f"{name} run {n} failed:\n{output[-5000:]}")
        est, got = makespans(output)
        rows.append(
            {"workflow": name, "run": n, "estimated": est, "measured": got, "error": (est - got) / got}
        )
        print(json.dumps(rows[-1]), flush=True)
        if n == 2:
            start = output.find("per rule")
            print(output[start : output.find("the run's report", start)], flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--user", default="alice")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--code", type=Path, default=Path("/tmp/converged-code"))
    parser.add_argument("--only", choices=["hybrid", "fanout"], default=None)
    args = parser.parse_args()
    copy_code(args.code)
    flows = {"hybrid": (ROOT / "examples" / "hybrid" / "Snakefile").read_text(), "fanout": FANOUT}
    for name, snakefile in flows.items():
        if args.only in (None, name):
            bench(args.user, name, snakefile, args.runs, args.jobs, args.code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
