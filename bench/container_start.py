"""Benchmark (issues 13, 24): what a container costs a Slurm step — Apptainer on the step image's SIF
mounted with squashfuse (what an unprivileged user gets), on the same SIF mounted by the kernel (root),
and on the image unpacked as a directory; charliecloud on the directory (what the sites used before
issue 13); no container — side by side, alternating, as a Slurm job of the user runs it.

Each sample is one `sh -c 'python3 -c "import snakemake"'` (the step image's snakemake imported: what
every converged step does first) timed from fork to exit; `true` alone is measured too (the bare start).
The samples alternate between the runtimes so drifting load falls on all of them.

Usage: .venv/bin/python bench/container_start.py [--samples 10] [--user alice]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SIF = "/var/lib/converged-local/images/step.sif"
DIR = "/var/lib/converged-local/images/step"
SHARED = "/var/lib/converged-local/shared"


def runtimes(command: list[str]) -> dict[str, tuple[str | None, list[str]]]:
    """name -> (who runs it: None for the user, else a user name; argv)."""
    apptainer = ["apptainer", "exec", "--containall", "--bind", SHARED]
    return {
        "apptainer SIF (squashfuse, as the user)": (None, [*apptainer, SIF, *command]),
        "apptainer directory (as the user)": (None, [*apptainer, DIR, *command]),
        # root mounts a SIF's squashfs partition with the kernel (loop device), no FUSE in between
        "apptainer SIF (kernel squashfs, as root)": ("root", [*apptainer, SIF, *command]),
        "charliecloud directory (as the user)": (
            None,
            ["ch-run", "--set-env", f"--bind={SHARED}", DIR, "--", *command],
        ),
        "none (host python3)": (None, command),
    }


def timed(argv: list[str], user: str) -> float:
    start = time.perf_counter()
    subprocess.run(["runuser", "-u", user, "--", *argv], check=True, capture_output=True, cwd="/tmp")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--user", default="alice")
    args = parser.parse_args()
    workloads = {
        "true": ["true"],
        "import snakemake": ["python3", "-c", "import snakemake"],
        # what a step's `python3 -m snakemake` loads before it reads the workflow
        "import snakemake.cli": ["python3", "-c", "import snakemake.cli"],
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    load = round(os.getloadavg()[0], 2)
    for name, command in workloads.items():
        argvs = runtimes(command)
        if name != "true":
            argvs.pop("none (host python3)")  # the host has no snakemake of the image's
        for who, argv in argvs.values():
            timed(argv, who or args.user)  # warm the page cache once
        samples: dict[str, list[float]] = {k: [] for k in argvs}
        for _ in range(args.samples):
            for runtime, (who, argv) in argvs.items():
                samples[runtime].append(timed(argv, who or args.user))
        results[name] = {
            runtime: {
                "median_s": round(statistics.median(s), 3),
                "p90_s": round(sorted(s)[int(0.9 * (len(s) - 1))], 3),
                "max_s": round(max(s), 3),
            }
            for runtime, s in samples.items()
        }
    print(json.dumps({"samples": args.samples, "load_avg_1m_at_start": load, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
