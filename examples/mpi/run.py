"""Run the MPI example on the local converged cluster as alice, once with each default backend: the
same LAMMPS rule as an MPIJob on Kubernetes (Kueue, the MPI Operator) and as a 2-node job on Slurm
(srun --mpi=pmix, Apptainer), and show that both ran LAMMPS with the same number of MPI tasks.

Usage: .venv/bin/python examples/mpi/run.py [--user alice] [--jobs 8]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from site_run import parse_args, run_example, say


def main() -> int:
    args = parse_args(__doc__)
    procs: dict[str, str] = {}
    for backend in ("kueue", "slurm"):
        rc, workdir = run_example(
            "mpi", "summary.txt", args.user, args.jobs, f"--converged-default-backend={backend}"
        )
        if rc != 0:
            return rc
        loop = re.search(r"Loop time of \S+ on (\d+) procs", (workdir / "summary.txt").read_text())
        procs[backend] = loop.group(1) if loop else "?"
    say(f"LAMMPS MPI tasks: {', '.join(f'{b} {n}' for b, n in procs.items())}")
    return 0 if len(set(procs.values())) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
