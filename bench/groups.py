"""Benchmark (issue 16 part 2): the same workflow of N one-line steps run one job per step and grouped
into StepAllocations (`--converged-group-allocations`), on Slurm and on Kueue, side by side in one run.

Four arms, one after the other, each from a fresh directory on the shared filesystem, each with
`snakemake --executor converged -j N` and the controller embedded in it (namespace team-a, Slurm user
alice), on bench/makespan.py's Snakefile (N independent steps writing one line each, mem_mb=100,
runtime=5):
- slurm per-step: SlurmCluster `converged-plugin` (hpc1, the step SIF under Apptainer), one batch job
  per step; slurm grouped: the same with --converged-group-allocations (one batch job per allocation,
  each step a job step of it, forked from the allocation's warm snakemake);
- kueue per-step: LocalQueue `real` (the real kubelet node), one suspended Job (one Workload) per step;
  kueue grouped: one Job per allocation, its pod running every step of the group.
Measured per arm: wall time of the snakemake process (DAG building included) and steps/s; the backend
objects the run made (distinct Slurm jobs and, grouped, the job steps sacct lists; Kueue Jobs named by
the steps and the Workloads of the run still listed at its end); machine load over the arm (CPUs busy
on average from /proc/stat, the 1-minute load average at its end) and the CPU seconds of the snakemake
process tree itself (plugin + embedded controller; the steps run under slurmd or the kubelet).
Each arm starts on an empty Slurm queue (others share the local cluster). Figures are printed, never
asserted.

Usage: .venv/bin/python bench/groups.py [--steps 200] [--arms slurm,slurm-grouped,kueue,kueue-grouped]
Needs the local cluster up with this branch's CRDs and the test identities (run tests/integration once).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from makespan import cluster_env, run  # noqa: E402

from tests.integration.plugin_support import apply_plugin_cluster, apply_plugin_queue  # noqa: E402

NS = "team-a"
ARMS = ("slurm", "slurm-grouped", "kueue", "kueue-grouped")


def read_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def kubectl_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [f"{env['CONVERGED_LOCAL_BIN']}/kubectl", f"--kubeconfig={env['KUBECONFIG']}", *args, "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out))


def count_job_steps(job_ids: set[str]) -> int:
    out = subprocess.run(
        ["sacct", "-n", "-P", "-o", "JobID", "-j", ",".join(sorted(job_ids))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ids = [line for line in out.split() if "." in line]
    return sum(1 for i in ids if not i.endswith((".batch", ".extern")))


def backend_objects(env: dict[str, str], run_id: str, backend: str) -> dict[str, int]:
    """What the run made on its backend: Slurm jobs (and job steps), or Kueue Jobs and Workloads."""
    steps = kubectl_json(env, "get", "wfs", "-n", NS, "-l", f"converged.dev/run={run_id}")["items"]
    allocations = kubectl_json(env, "get", "alloc", "-n", NS, "-l", f"converged.dev/run={run_id}")["items"]
    refs = [s["status"].get("backendRef") or {} for s in steps]
    out = {"workflowsteps": len(steps), "allocations": len(allocations)}
    if backend == "slurm":
        jobs = {str(r["jobId"]) for r in refs if "jobId" in r}
        out["slurm_jobs"] = len(jobs)
        if allocations:
            out["slurm_job_steps"] = count_job_steps(jobs)
    else:
        out["kueue_jobs"] = len({r.get("display") for r in refs if r.get("display")})
        workloads = kubectl_json(env, "get", "workloads.kueue.x-k8s.io", "-n", NS)["items"]
        owners = [(w["metadata"].get("ownerReferences") or [{}])[0].get("name", "") for w in workloads]
        out["kueue_workloads"] = sum(1 for name in owners if name.startswith(run_id))
    return out


def arm_argv(env: dict[str, str], arm: str, steps: int, run_id: str) -> list[str]:
    backend = arm.split("-")[0]
    place = (
        ["--converged-slurm-cluster=converged-plugin", f"--converged-image={env['CONVERGED_SLURM_IMAGE']}"]
        if backend == "slurm"
        else [
            "--converged-local-queue=real",
            f"--converged-shared-paths={env['CONVERGED_SHARED_DIR']}",
            f"--converged-image={env['CONVERGED_STEP_IMAGE']}",
        ]
    )
    return [
        str(Path(sys.executable).with_name("snakemake")),
        "--executor=converged",
        f"--jobs={steps}",
        "--quiet",
        f"--converged-namespace={NS}",
        f"--converged-default-backend={backend}",
        "--converged-controller=embedded",
        "--converged-poll-interval=1",
        f"--converged-run-id={run_id}",
        *place,
        *(["--converged-group-allocations"] if arm.endswith("grouped") else []),
    ]


def run_arm(env: dict[str, str], arm: str, steps: int, base: Path) -> dict[str, Any]:
    run_id = f"sm-bench-{arm.replace('-grouped', 'g')}-{uuid.uuid4().hex[:6]}"
    argv = arm_argv(env, arm, steps, run_id)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, total0 = read_cpu_ticks()
    _, _, elapsed = run(argv, base / arm, {**os.environ, **env}, steps)
    busy1, total1 = read_cpu_ticks()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "arm": arm,
        "run": run_id,
        "steps": steps,
        "wall_s": round(elapsed, 1),
        "steps_per_s": round(steps / elapsed, 2),
        **backend_objects(env, run_id, arm.split("-")[0]),
        "cpus_busy_avg": round((busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1), 2),
        "load_1min_at_end": round(os.getloadavg()[0], 2),
        "snakemake_cpu_s": round(own_cpu, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Figures go to stdout as JSON; each arm's line goes to stderr as it ends.",
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"unknown arms: {', '.join(unknown)}")
    env = cluster_env()
    apply_plugin_cluster(env)
    apply_plugin_queue(env)
    base = Path(env["CONVERGED_SHARED_DIR"]) / "bench-groups" / uuid.uuid4().hex[:8]
    base.mkdir(parents=True)
    base.parent.chmod(0o1777)
    base.chmod(0o1777)
    rows = []
    for arm in arms:
        row = run_arm(env, arm, args.steps, base)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    summary = {"steps": args.steps, "cpus": os.cpu_count(), "logs": str(base), "arms": rows}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
