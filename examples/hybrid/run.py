"""Run the hybrid example on the local converged cluster as alice: `make up` calls this after `cluster up`.

Three steps on the Slurm `cpu` partition, a GPU step on `gpu`, a Kubernetes Job admitted by Kueue on the
real node, and a final step combining their outputs — planned, then run, with no converged flags.

Usage: .venv/bin/python examples/hybrid/run.py [--user alice] [--jobs 8]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from site_run import main

if __name__ == "__main__":
    sys.exit(main("hybrid", "report.txt"))
