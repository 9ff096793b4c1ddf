"""Benchmark: Kubernetes API requests per status-check cycle with N (default 1,000) active jobs, in one
run: `snakemake --executor converged` versus snakemake-executor-plugin-kubernetes (from PyPI), whose
design costs 2 API calls per job per status round (a GET of the Job's status and a LIST of its pods).

Both run the same Snakefile (N independent jobs, `sleep 3600`) with `--jobs N`, one after the other,
each through bench/_count_requests.py, which records every request the `kubernetes` client makes (both
plugins use it) and attributes to a status cycle exactly the requests made while the plugin's
`check_active_jobs` runs. Once K (default 5) cycles have seen all N jobs active, snakemake gets SIGINT:
the plugin's cancel deletes what it created; the bench then checks that nothing is left, and deletes
its namespace either way.

- converged: namespace `bench-status-converged` (made here, with a LocalQueue `default` on the
  ClusterQueue `default`, which the router needs to send the jobs to Kueue), `--converged-controller
  deployed` with NO controller running, `--converged-default-backend kueue`, image
  `registry.invalid/bench:1`. The WorkflowSteps therefore stay as created (no Kueue Job, no Slurm job):
  this isolates the executor's status cycle, whose cost does not depend on what the steps do; the
  controller's own cost per cycle is measured by bench/controller_steps.py. Not team-b: the embedded
  controllers of tests/integration/test_controller_embedded.py and bench/controller_steps.py watch all
  of team-b and would drive these steps. A cluster-wide controller would too: the phases of the steps
  while the cycles are counted are printed (they must all have no status).
- snakemake-executor-plugin-kubernetes: latest from PyPI, in its own venv (`--k8s-venv`, created with
  pip when missing, with the snakemake version of this venv and snakemake-storage-plugin-fs, because the
  plugin implies no shared filesystem: `--default-storage-provider fs` under the run directory),
  namespace `bench-k8s-plugin`, image `registry.invalid/bench:1`. Its pods must stay active without
  running anywhere: the plugin's only placement knob is the `machine_type` resource, which it turns into
  the node selector `node.kubernetes.io/instance-type`; a value no node carries keeps every pod Pending
  (unschedulable), so its Job stays active, nothing is pulled (real-node-0 never gets a pod) and nothing
  completes on the kwok nodes. The unpullable image is a second guard.

Only the first K cycles that saw all N jobs are counted; all of them ended before the SIGINT (the
plugins' status cycles go on while their cancel runs). `--scheduler greedy` for both: it only decides
how snakemake picks ready jobs. Each plugin keeps its own interval between cycles (converged:
`--converged-poll-interval`, 2 s; kubernetes: snakemake's `--seconds-between-status-checks`, 10 s);
`--max-status-checks-per-second` (default 100 here, snakemake's is 10) only paces the kubernetes
plugin's per-job checks, not how many requests a cycle makes.

Usage: .venv/bin/python bench/status_calls.py [--jobs 1000] [--cycles 5] [--max-status-checks 100]
Needs the local cluster up (deploy/local/cluster); submits nothing to Slurm.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = "/var/lib/converged-local/bin/kubectl"
WRAPPER = ROOT / "bench" / "_count_requests.py"
IMAGE = "registry.invalid/bench:1"
CONVERGED_NS = "bench-status-converged"
K8S_NS = "bench-k8s-plugin"
NOWHERE = "converged-bench-nowhere"  # a node.kubernetes.io/instance-type no node has
FIELD_MANAGER = "bench-status-calls"
ANCHOR = "snakemake-executor-plugin-kubernetes: 2 API calls per job per status round"

SNAKEFILE = """
rule all:
    input: expand("out/{{i}}.txt", i=range({jobs}))

rule hold:
    output: "out/{{i}}.txt"
    shell: "sleep 3600; echo {{wildcards.i}} > {{output}}"
"""


@dataclass
class Side:
    """One plugin under test: how to run snakemake with it and what it leaves in its namespace."""

    label: str
    version: str
    client: str  # version of the kubernetes Python client it runs with
    namespace: str
    python: Path
    args: list[str]
    leftover_kinds: tuple[str, ...]
    env: dict[str, str]


@dataclass
class Cycle:
    number: int
    active: int
    still_active: int
    seconds: float
    requests: Counter[str] = field(default_factory=Counter)
    response_bytes: int = 0

    @property
    def total(self) -> int:
        return sum(self.requests.values())


@dataclass
class Result:
    side: Side
    cycles: list[Cycle]  # the first K cycles with all N jobs active
    partial_cycles: int  # cycles that saw fewer than N jobs (during submission)
    other_threads: Counter[str]  # requests outside any status cycle, by "thread: endpoint"
    sanity: str
    cancel_seconds: float
    leftovers: dict[str, int]


# --- the cluster ---
def cluster_env() -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "deploy/local/cluster"), "env", "--json"], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    cp = subprocess.run(
        [KUBECTL, f"--kubeconfig={env['KUBECONFIG']}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if cp.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {cp.stderr.strip()}")
    return cp.stdout


def fresh_namespace(env: dict[str, str], namespace: str, local_queue: bool) -> None:
    """The bench's own namespace, empty (one left by an interrupted run is deleted first)."""
    kubectl(env, "delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=300s")
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    ]
    if local_queue:
        objects.append(
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "LocalQueue",
                "metadata": {"name": "default", "namespace": namespace},
                "spec": {"clusterQueue": "default"},
            }
        )
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    kubectl(env, "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", stdin=doc)


def delete_namespace(env: dict[str, str], namespace: str) -> None:
    kubectl(env, "delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=300s")


def count_objects(env: dict[str, str], namespace: str, kind: str) -> int:
    doc = json.loads(kubectl(env, "get", kind, "-n", namespace, "-o", "json"))
    return len(doc.get("items", []))


def sanity_converged(env: dict[str, str], namespace: str) -> str:
    """With no controller, no WorkflowStep may have a status (a phase) while the cycles are counted."""
    items = json.loads(kubectl(env, "get", "workflowsteps", "-n", namespace, "-o", "json"))["items"]
    phases = Counter(str(i.get("status", {}).get("phase") or "(no status)") for i in items)
    return f"{len(items)} WorkflowSteps, phases {dict(phases)}"


def sanity_k8s(env: dict[str, str], namespace: str) -> str:
    """Every pod Pending and bound to no node."""
    items = json.loads(kubectl(env, "get", "pods", "-n", namespace, "-o", "json"))["items"]
    phases = Counter(str(i.get("status", {}).get("phase")) for i in items)
    bound = sum(1 for i in items if i.get("spec", {}).get("nodeName"))
    return f"{len(items)} pods, phases {dict(phases)}, bound to a node: {bound}"


# --- the plugins ---
def dist_version(python: Path, dist: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    cp = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return cp.stdout.strip() or "?"


def ensure_k8s_plugin_venv(venv: Path, snakemake_version: str) -> Path:
    python = venv / "bin" / "python"
    if not (venv / "bin" / "snakemake").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        packages = [
            f"snakemake=={snakemake_version}",
            "snakemake-executor-plugin-kubernetes",
            "snakemake-storage-plugin-fs",
        ]
        subprocess.run([str(venv / "bin/pip"), "install", "-q", *packages], check=True)
    installed = dist_version(python, "snakemake")
    if installed != snakemake_version:
        raise SystemExit(f"{venv} has snakemake {installed}, this venv {snakemake_version}: remove {venv}")
    return python


def common_args(jobs: int, max_status_checks: float) -> list[str]:
    return [
        f"--jobs={jobs}",
        "--scheduler=greedy",  # job selection only; the ILP solver on 1,000 jobs is just slower
        f"--max-status-checks-per-second={max_status_checks:g}",
    ]


def converged_side(env: dict[str, str], jobs: int, max_status_checks: float) -> Side:
    return Side(
        label="converged",
        version=importlib.metadata.version("converged"),
        client=importlib.metadata.version("kubernetes"),
        namespace=CONVERGED_NS,
        python=Path(sys.executable),
        args=[
            "--executor=converged",
            *common_args(jobs, max_status_checks),
            f"--converged-namespace={CONVERGED_NS}",
            "--converged-controller=deployed",
            "--converged-default-backend=kueue",
            "--converged-local-queue=default",
            f"--converged-image={IMAGE}",
        ],
        leftover_kinds=("workflowsteps",),
        env={**os.environ, **env},
    )


def k8s_side(env: dict[str, str], venv: Path, jobs: int, max_status_checks: float, storage: Path) -> Side:
    python = ensure_k8s_plugin_venv(venv, importlib.metadata.version("snakemake"))
    return Side(
        label="snakemake-executor-plugin-kubernetes",
        version=dist_version(python, "snakemake-executor-plugin-kubernetes"),
        client=dist_version(python, "kubernetes"),
        namespace=K8S_NS,
        python=python,
        args=[
            "--executor=kubernetes",
            *common_args(jobs, max_status_checks),
            f"--kubernetes-namespace={K8S_NS}",
            f"--container-image={IMAGE}",
            "--default-storage-provider=fs",
            f"--default-storage-prefix={storage}",
            "--default-resources",
            f"machine_type='{NOWHERE}'",
        ],
        leftover_kinds=("jobs", "pods", "secrets"),
        env={**os.environ, **env, "PATH": f"{python.parent}:{os.environ['PATH']}"},
    )


# --- one run ---
def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def full_cycles(records: list[dict[str, Any]], jobs: int) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == "cycle" and r["active"] == jobs]


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def wait_for_cycles(
    proc: subprocess.Popen[bytes], outfile: Path, log: Path, jobs: int, cycles: int, timeout: float
) -> None:
    deadline, seen = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        done = len(full_cycles(read_records(outfile), jobs))
        if done > seen:
            print(f"  status cycles with all {jobs} jobs active: {min(done, cycles)}/{cycles}", flush=True)
            seen = done
        if done >= cycles:
            return
        if proc.poll() is not None:
            raise SystemExit(
                f"snakemake exited (rc {proc.returncode}) before {cycles} full cycles:\n{log_tail(log)}"
            )
        time.sleep(2)
    raise SystemExit(f"no {cycles} status cycles with all {jobs} jobs active within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """SIGINT, as Ctrl-C: snakemake calls the plugin's cancel. Returns the seconds until it exited."""
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"  snakemake still running {timeout:.0f} s after SIGINT: killing it", file=sys.stderr)
        proc.kill()
        proc.wait(30)
    return time.monotonic() - started


def leftovers(env: dict[str, str], side: Side, settle: float = 60) -> dict[str, int]:
    """What the plugin's cancel left in the namespace, after up to `settle` s for deletions to finish."""
    deadline = time.monotonic() + settle
    while True:
        counts = {kind: count_objects(env, side.namespace, kind) for kind in side.leftover_kinds}
        if not any(counts.values()) or time.monotonic() >= deadline:
            return counts
        time.sleep(2)


def run_side(
    env: dict[str, str],
    side: Side,
    workdir: Path,
    jobs: int,
    cycles: int,
    sanity: Callable[[dict[str, str], str], str],
) -> Result:
    workdir.mkdir(parents=True)
    (workdir / "Snakefile").write_text(SNAKEFILE.format(jobs=jobs))
    outfile, log = workdir / "requests.jsonl", workdir / "snakemake.log"
    argv = [str(side.python), str(WRAPPER), str(outfile), "--", *side.args]
    print(f"{side.label} {side.version}: {jobs} jobs in {side.namespace}, log {log}", flush=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=workdir, env=side.env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_cycles(proc, outfile, log, jobs, cycles, timeout=900 + jobs * 2.0)
            seen = sanity(env, side.namespace)
        finally:
            cancel_seconds = stop(proc, timeout=600)
    left = leftovers(env, side)
    return summarize(side, read_records(outfile), jobs, cycles, seen, cancel_seconds, left)


# --- the figures ---
def endpoint(method: str, path: str) -> str:
    """`GET jobs/{name}/status`, `GET pods (list)`: the request without namespace and object names."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    if len(rest) == 1:
        kind = {"GET": "list", "DELETE": "delete collection", "POST": "create"}.get(method, "")
        return f"{method} {rest[0]} ({kind})" if kind else f"{method} {rest[0]}"
    return f"{method} {'/'.join([rest[0], '{name}', *rest[2:]])}"


def summarize(
    side: Side,
    records: list[dict[str, Any]],
    jobs: int,
    cycles: int,
    sanity: str,
    cancel_seconds: float,
    left: dict[str, int],
) -> Result:
    cycle_records = [r for r in records if r["kind"] == "cycle"]
    counted = {r["cycle"]: r for r in full_cycles(records, jobs)[:cycles]}
    by_number = {
        n: Cycle(n, r["active"], r["still_active"], r["end"] - r["start"]) for n, r in counted.items()
    }
    other: Counter[str] = Counter()
    for r in records:
        if r["kind"] != "request":
            continue
        if r["cycle"] is None:
            other[f"{r['thread']}: {endpoint(r['method'], r['path'])}"] += 1
        elif r["cycle"] in by_number:
            by_number[r["cycle"]].requests[endpoint(r["method"], r["path"])] += 1
            by_number[r["cycle"]].response_bytes += r.get("bytes") or 0
    partial = sum(1 for r in cycle_records if 0 < r["active"] < jobs)
    return Result(side, list(by_number.values()), partial, other, sanity, cancel_seconds, left)


def median_min_max(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def per_endpoint(result: Result) -> str:
    names = sorted({name for c in result.cycles for name in c.requests})
    parts = []
    for name in names:
        low, high = min(c.requests[name] for c in result.cycles), max(c.requests[name] for c in result.cycles)
        parts.append(f"{name}: {low}" if low == high else f"{name}: {low}-{high}")
    return "; ".join(parts)


def table(results: list[Result], jobs: int, cycles: int) -> str:
    rows: list[tuple[str, ...]] = [
        ("", *(f"{r.side.label} {r.side.version}" for r in results)),
        ("---", *("---:" for _ in results)),
    ]

    def row(label: str, cell: Callable[[Result], str]) -> None:
        rows.append((label, *(cell(r) for r in results)))

    def fmt(values: tuple[float, float, float], digits: int) -> tuple[str, str]:
        med, low, high = (f"{v:.{digits}f}" for v in values)
        return med, f"{low} / {high}"

    row("kubernetes Python client", lambda r: r.side.client)
    row("status cycles counted (all jobs active)", lambda r: str(len(r.cycles)))
    row("active jobs per cycle (min / max)", lambda r: "{} / {}".format(*_active_range(r)))
    row("API requests per status cycle, median", lambda r: fmt(_totals(r), 0)[0])
    row("API requests per status cycle, min / max", lambda r: fmt(_totals(r), 0)[1])
    row("API requests per active job per cycle, median", lambda r: fmt(_per_job(r), 4)[0])
    row("response body per cycle, median (MB)", lambda r: f"{_median_mb(r):.2f}")
    row(
        "status cycle duration, median (s)", lambda r: f"{statistics.median(c.seconds for c in r.cycles):.2f}"
    )
    row("requests per cycle by endpoint", per_endpoint)
    lines = [" | ".join(cells).join(("| ", " |")) for cells in rows]
    lines.append("")
    lines.append(
        f"{jobs} active jobs, first {cycles} status cycles that saw all of them; design anchor: {ANCHOR}"
    )
    return "\n".join(lines)


def _totals(r: Result) -> tuple[float, float, float]:
    return median_min_max([float(c.total) for c in r.cycles])


def _per_job(r: Result) -> tuple[float, float, float]:
    return median_min_max([c.total / c.active for c in r.cycles])


def _median_mb(r: Result) -> float:
    return statistics.median(c.response_bytes for c in r.cycles) / 1e6


def _active_range(r: Result) -> tuple[int, int]:
    return min(c.active for c in r.cycles), max(c.active for c in r.cycles)


def details(result: Result) -> str:
    other = ", ".join(f"{name}: {n}" for name, n in sorted(result.other_threads.items()))
    still = sorted({c.still_active for c in result.cycles})
    return "\n".join(
        [
            f"{result.side.label}:",
            f"  jobs yielded still active per counted cycle: {still}; cycles during submission: "
            f"{result.partial_cycles}",
            f"  while counting: {result.sanity}",
            f"  requests outside status cycles (submission, cancel, setup), whole run: {other or 'none'}",
            f"  SIGINT -> exit: {result.cancel_seconds:.1f} s; left after cancel: {result.leftovers}",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--max-status-checks", type=float, default=100.0)
    parser.add_argument(
        "--k8s-venv", type=Path, default=Path("/var/cache/converged/bench-venvs/kubernetes-plugin")
    )
    args = parser.parse_args()
    env = cluster_env()
    base = Path(env["CONVERGED_SHARED_DIR"]) / "bench-status-calls" / uuid.uuid4().hex[:8]
    sides = [
        (converged_side(env, args.jobs, args.max_status_checks), True, sanity_converged),
        (
            k8s_side(env, args.k8s_venv, args.jobs, args.max_status_checks, base / "k8s-storage"),
            False,
            sanity_k8s,
        ),
    ]
    results = []
    for side, local_queue, sanity in sides:
        fresh_namespace(env, side.namespace, local_queue)
        try:
            results.append(run_side(env, side, base / side.label, args.jobs, args.cycles, sanity))
        finally:
            delete_namespace(env, side.namespace)
    print()
    print(table(results, args.jobs, args.cycles))
    print()
    for result in results:
        print(details(result))
    print(f"logs and request records: {base}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
