"""Run an example workflow on the local converged cluster as a user would (examples/<name>/run.py).

`cluster up` has set the site up (the daemon deployed, SlurmCluster hpc1, users alice and bob). As the
user, in a new directory of theirs on the shared filesystem, with no converged flags (the site's
defaults for their namespace fill them in):
1. `snakemake --executor converged --converged-plan`: every step's backend, target and reason;
2. `snakemake --executor converged -j 8`: the run, its Slurm steps in the step image's SIF as the user,
   its Kubernetes steps as the user's uid on the real node, driven by the site's deployed controller;
3. `kubectl get workflowsteps` of the run, as the user, and the workflow's final output.

Exit status: snakemake's (0 when every step succeeded).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent  # examples/
ROOT = HERE.parent


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def cluster_env() -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "deploy/local/cluster"), "env", "--json"], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def as_user(
    user: str, workdir: Path, command: str, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """`command` in a login shell of `user` (their PATH, their kubeconfig), in `workdir`."""
    return subprocess.run(
        ["runuser", "-l", user, "-c", f"cd {shlex.quote(str(workdir))} && {command}"],
        text=True,
        capture_output=capture,
        check=False,
    )


def new_run_dir(env: dict[str, str], user: str, example: str) -> Path:
    """A new directory of `user`'s own on the shared filesystem, the example's files copied in."""
    base = Path(env["CONVERGED_SHARED_DIR"]) / "users" / user
    run = base / f"{example}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    as_user(user, base, f"mkdir {shlex.quote(run.name)}")
    for source in sorted((HERE / example).iterdir()):
        if source.is_file() and source.name != "run.py":
            target = run / source.name
            shutil.copy(source, target)
            shutil.chown(target, user, user)
    return run


def latest_run_id(user: str, workdir: Path, since: float) -> str | None:
    """The newest run started in `workdir` since `since` (other runs of the user's may share her
    namespace at the same time)."""
    out = as_user(user, workdir, "kubectl get workflowsteps -o json", capture=True).stdout
    runs = [
        (o["metadata"]["creationTimestamp"], o["metadata"]["labels"].get("converged.dev/run", ""))
        for o in json.loads(out or '{"items": []}')["items"]
        if o["spec"].get("workingDir") == str(workdir)
    ]
    fresh = [
        run
        for stamp, run in sorted(runs)
        if datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() >= since - 1
    ]
    return fresh[-1] if fresh else None


def run_example(example: str, output: str, user: str, jobs: int, flags: str = "") -> tuple[int, Path]:
    env = cluster_env()
    workdir = new_run_dir(env, user, example)
    extra = f" {flags}" if flags else ""
    say(f"as {user}, in {workdir}: snakemake --executor converged{extra} --converged-plan -j 1")
    if as_user(user, workdir, f"snakemake --executor converged{extra} --converged-plan -j 1").returncode != 0:
        return 1, workdir
    say(f"as {user}: snakemake --executor converged{extra} -j {jobs}")
    started = time.time()
    rc = as_user(
        user, workdir, f"snakemake --executor converged{extra} -j {jobs} --printshellcmds"
    ).returncode
    run_id = latest_run_id(user, workdir, started)
    if run_id:
        say(f"as {user}: kubectl get workflowsteps -l converged.dev/run={run_id} -o wide")
        as_user(user, workdir, f"kubectl get workflowsteps -l converged.dev/run={run_id} -o wide")
    if rc == 0:
        say(f"{workdir}/{output}")
        print((workdir / output).read_text(), end="")
    else:
        print(f"snakemake failed ({rc}); its log is under {workdir}/.snakemake/log", file=sys.stderr)
    return rc, workdir


def parse_args(doc: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", default="alice", help="a user of the local site (alice or bob)")
    parser.add_argument("--jobs", type=int, default=8, help="snakemake --jobs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (it runs the workflow as the site's user with runuser)")
    return args


def main(example: str, output: str) -> int:
    args = parse_args(sys.modules["__main__"].__doc__)
    return run_example(example, output, args.user, args.jobs)[0]
