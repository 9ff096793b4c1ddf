"""Run test workflows as a site user: each in a fresh copy in her directory on the shared filesystem,
with her login environment (`runuser -l`, as examples/site_run.py), compared with its expected results.

A workflow that runs past its time limit is interrupted as a user would (SIGINT: snakemake cancels its
steps), then killed.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.conformance.results import compare_results

ROOT = Path(__file__).resolve().parents[2]
CONVERGED = "snakemake --executor converged -j 8 --cores 3"
# how each mode runs a workflow: with 3 cores, as snakemake's run() gives every executor (a remote one's
# jobs then get --cores 3 too, not the cores of the node, of which this machine has 2); the converged
# runs route every step to one backend the way a profile would, with no other converged flag
MODES = {
    "local": "snakemake --cores 3",
    "slurm": f"{CONVERGED} --default-resources converged_backend=slurm",
    "kueue": f"{CONVERGED} --default-resources converged_backend=kueue",
}
TIMEOUTS = {"local": 300.0, "slurm": 900.0, "kueue": 900.0}
# workflows no remote executor can pass, whatever it does: what they expect is the local executor's own
NO_REMOTE_EXECUTOR = {
    "test_groupid_expand": "expects foo.local.txt: the group id the local executor gives a group job "
    "is 'local', a remote executor's is the group job's own (snakemake's test_groupid_expand_cluster "
    "is the remote counterpart)",
    "test_queue_input": "its Snakefile starts a thread that feeds the input queue; the job's own "
    "snakemake reads the Snakefile too, starts the thread and waits for the queue to be consumed, "
    "forever",
}
_ERROR = re.compile(r"Error|Exception|error:|exited|failed", re.IGNORECASE)


@dataclass
class Outcome:
    workflow: str
    mode: str
    passed: bool
    seconds: float
    returncode: int | None  # None: interrupted at its time limit
    problems: list[str] = field(default_factory=list)
    log: str = ""

    def reason(self) -> str:
        return "; ".join(self.problems) if self.problems else ""


def cluster_env() -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "deploy/local/cluster"), "env", "--json"], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def user_command(user: str, workdir: Path, command: str) -> list[str]:
    """`command` in `workdir` in a login shell of `user` (her PATH, her kubeconfig); in our own shell
    when `user` is who runs this."""
    line = f"cd {shlex.quote(str(workdir))} && {command}"
    if user == getpass.getuser():
        return ["bash", "-c", line]
    return ["runuser", "-l", user, "-c", line]


def user_snakemake_version(user: str) -> str:
    argv = user_command(user, Path("/tmp"), "snakemake --version")
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def copy_workflow(source: Path, workdir: Path, user: str) -> None:
    """The workflow's folder, expected-results included (as snakemake's run() copies it), owned by
    `user`."""
    shutil.copytree(source, workdir, symlinks=True)
    for path in [workdir, *workdir.rglob("*")]:
        os.chown(path, *_ids(user), follow_symlinks=False)


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def run_command(argv: Sequence[str], log: Path, timeout: float) -> int | None:
    """Run `argv`, its output into `log`; its exit status, None when interrupted at `timeout` seconds."""
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)  # snakemake cancels what it submitted
            try:
                proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            return None


def summarize_log(log: Path, lines: int = 3) -> list[str]:
    """The lines of a failed run's log that say why (its first error lines, else its last lines)."""
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [line.strip() for line in text if _ERROR.search(line)]
    return (errors or [line.strip() for line in text if line.strip()][-lines:])[:lines]


def run_workflow(source: Path, mode: str, base: Path, *, user: str, pythonpath: str | None = None) -> Outcome:
    """`source` run in `mode` as `user` in base/mode/<name>, compared with its expected results."""
    workdir = base / mode / source.name
    copy_workflow(source, workdir, user)
    command = MODES[mode]
    if pythonpath:
        command = f"PYTHONPATH={shlex.quote(pythonpath)} {command}"
    log = base / mode / f"{source.name}.log"
    started = time.monotonic()
    rc = run_command(user_command(user, workdir, command), log, TIMEOUTS[mode])
    seconds = time.monotonic() - started
    if rc == 0:
        problems = compare_results(source / "expected-results", workdir)
    elif rc is None:
        problems = [f"interrupted after {TIMEOUTS[mode]:.0f} s", *summarize_log(log)]
    else:
        problems = [f"snakemake exited {rc}", *summarize_log(log)]
    return Outcome(source.name, mode, rc == 0 and not problems, round(seconds, 1), rc, problems, str(log))


def make_user_dir(path: Path, user: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, *_ids(user))
    return path


def run_all(
    runs: Iterable[tuple[Path, str]],
    base: Path,
    *,
    user: str,
    parallel: int,
    pythonpath: str | None = None,
    report: Callable[[Outcome], None] = lambda o: None,
) -> list[Outcome]:
    """Every (workflow, mode), `parallel` at a time, each reported as it ends."""
    runs = list(runs)
    for mode in {mode for _, mode in runs}:
        make_user_dir(base / mode, user)

    def one(run: tuple[Path, str]) -> Outcome:
        outcome = run_workflow(*run, base, user=user, pythonpath=pythonpath)
        report(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(one, runs))


def write_outcomes(path: Path, outcomes: Iterable[Outcome]) -> None:
    path.write_text(json.dumps([asdict(o) for o in outcomes], indent=1) + "\n")


def read_outcomes(path: Path) -> list[Outcome]:
    return [Outcome(**o) for o in json.loads(path.read_text())]
