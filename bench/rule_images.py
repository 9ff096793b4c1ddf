"""Benchmark (issue 23): what running a rule in the user's own image costs a step, beside the step image,
on both backends, as alice on the site as `make up` leaves it (the deployed controller, no flags but the
backend).

Four arms, each the same N independent one-line steps (`echo i > out/i.txt`), run one after the other
and repeated round by round so drifting load falls on all of them:
- `slurm / step image`: no `container:`; each step's snakemake runs the command in the step image;
- `slurm / rule image`: `container:` alice's busybox-only image (from the site registry, pulled once
  into `.snakemake/singularity/` by the run's snakemake): the command handed to the node's Apptainer;
- `kueue / step image` and `kueue / rule image`: the same on Kubernetes (the rule image as a sidecar
  of each step's pod, pulled by the kubelet once per node).
Wall time is the snakemake process's (DAG, pulls, submission, steps, status), and per step the median
of the steps' own start→end (WorkflowStep status) — the part the hand-over adds to.

Usage: .venv/bin/python bench/rule_images.py [--steps 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.test_rule_images import pushed_busybox  # noqa: E402

USER = "alice"
SNAKEFILE = """
{container}
rule all:
    input: expand("out/{{i}}.txt", i=range({steps}))

rule step:
    output: "out/{{i}}.txt"
    resources: mem_mb=100, runtime=5
    shell: "echo {{wildcards.i}} > {{output}}"
"""


def as_user(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-l", USER, "-c", f"cd {shlex.quote(str(cwd))} && {command}"],
        capture_output=True,
        text=True,
        timeout=1800,
    )


def cluster_env() -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "deploy/local/cluster"), "env", "--json"], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def new_dir(env: dict[str, str], name: str) -> Path:
    path = Path(env["CONVERGED_SHARED_DIR"]) / "users" / USER / f"bench-{name}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    shutil.chown(path, USER, USER)
    return path


def step_seconds(run_dir: Path) -> list[float]:
    """Each step's start→end from its WorkflowStep status (the run id from snakemake's log)."""
    logs = sorted((run_dir / ".snakemake" / "log").glob("*.log"))
    text = logs[-1].read_text() if logs else ""
    found = re.search(r"converged: run (\S+) in namespace", text)
    if found is None:
        return []
    run = found.group(1)
    out = as_user(f"kubectl get wfs -l converged.dev/run={run} -o json", run_dir).stdout
    spans = []
    for obj in json.loads(out or '{"items": []}')["items"]:
        status = obj.get("status", {})
        if status.get("startTime") and status.get("completionTime"):
            start = datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(status["completionTime"].replace("Z", "+00:00"))
            spans.append((end - start).total_seconds())
    return spans


def run_arm(env: dict[str, str], backend: str, image: str | None, steps: int) -> dict[str, float]:
    run_dir = new_dir(env, backend)
    container = f"container: {image!r}" if image else ""
    (run_dir / "Snakefile").write_text(SNAKEFILE.format(container=container, steps=steps))
    shutil.chown(run_dir / "Snakefile", USER, USER)
    start = time.perf_counter()
    done = as_user(
        f"snakemake --executor converged --sdm apptainer -j {steps} "
        f"--default-resources converged_backend={backend}",
        run_dir,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{backend} {image}: snakemake failed:\n{done.stderr[-3000:]}")
    spans = step_seconds(run_dir)
    return {"wall_s": round(wall, 2), "step_median_s": round(statistics.median(spans), 2) if spans else -1}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    env = cluster_env()
    image = pushed_busybox(env, new_dir(env, "image"))
    arms = {
        "slurm / step image": ("slurm", None),
        "slurm / rule image": ("slurm", image),
        "kueue / step image": ("kueue", None),
        "kueue / rule image": ("kueue", image),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
    for _ in range(args.rounds):
        for name, (backend, img) in arms.items():
            results[name].append(run_arm(env, backend, img, args.steps))
    summary = {
        name: {
            "wall_s": [r["wall_s"] for r in runs],
            "step_median_s": [r["step_median_s"] for r in runs],
        }
        for name, runs in results.items()
    }
    print(json.dumps({"steps": args.steps, "rounds": args.rounds, "image": image, "arms": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
