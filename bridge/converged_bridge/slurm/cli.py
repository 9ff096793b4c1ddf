"""Slurm CLI transport: sbatch / squeue --json / scancel, run as the step's Slurm user.

For sites where the controller runs on a Slurm login node instead of reaching slurmrestd. Jobs are
submitted with the #SBATCH lines of the script (the CLI reads them); a different Unix user is reached
through `runuser`, so the controller must run as root to submit for others.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from converged_bridge.errors import PermanentBackendError, TransientBackendError
from converged_bridge.slurm.capacity import (
    CapacitySnapshot,
    PartitionInfo,
    build_capacity_snapshot,
    parse_scontrol_partitions,
    parse_sinfo_json,
    partitions_known,
)
from converged_bridge.slurm.jobs import JOB_PARSERS, SlurmJob
from converged_bridge.slurm.transport import Submission

# stderr fragments of Slurm's commands that mean "try again later"
_TRANSIENT = (
    "unable to contact slurm controller",
    "socket timed out",
    "temporarily unable to accept job",
    "slurm_receive_msg",
    "connection refused",
    "zero bytes were transmitted",
)
_JOB_GONE = ("invalid job id specified", "job/step already completing or completed", "already completed")


def classify_cli_error(stderr: str) -> type[TransientBackendError | PermanentBackendError]:
    low = stderr.lower()
    return TransientBackendError if any(t in low for t in _TRANSIENT) else PermanentBackendError


def parse_squeue_json(doc: Mapping[str, Any]) -> list[SlurmJob]:
    """`squeue --json` of any Slurm we speak; the dialect is named in its `meta`.

    22.05 names it at meta.plugin.type, 23.02 at meta.plugins.data_parser, 23.11+ at meta.plugin.data_parser.
    26.05 prints v0.0.45 unless asked for another (`--json=v0.0.42`).
    """
    meta = doc.get("meta", {})
    plugin = meta.get("plugin", {})
    dialect = str(
        plugin.get("type") or plugin.get("data_parser") or meta.get("plugins", {}).get("data_parser", "")
    )
    parse = JOB_PARSERS.get(dialect.rsplit("/", 1)[-1])
    if parse is None:
        raise PermanentBackendError(
            f"squeue --json speaks {dialect or 'an unknown format'}; converged reads {', '.join(JOB_PARSERS)}"
        )
    return parse(doc)


class CliTransport:
    """SlurmTransport over the Slurm commands found in `bin_dir` (default: PATH)."""

    def __init__(
        self,
        *,
        bin_dir: str | None = None,
        slurm_conf: str | None = None,
        timeout: float = 60.0,
        attempts: int = 4,
    ) -> None:
        self._bin = Path(bin_dir) if bin_dir else None
        self._env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        if slurm_conf:
            self._env["SLURM_CONF"] = slurm_conf
        self._timeout = timeout
        self._me = getpass.getuser()
        self._retrying = Retrying(
            retry=retry_if_exception_type(TransientBackendError),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        )
        self.commands = 0  # commands run, for benchmarks and tests
        self._partitions: tuple[PartitionInfo, ...] | None = None  # 22.05 only: sinfo --json lacks them

    def server_version(self) -> str:
        out = self._run(["sinfo", "--version"])  # "slurm 22.05.8"
        return out.split()[-1] if out.strip() else "unknown"

    def submit(self, submission: Submission) -> int:
        argv = ["sbatch", "--parsable", f"--chdir={submission.working_dir}"]
        out = self._run(argv, user=submission.user, stdin=submission.script, retry=False)
        first = out.strip().split(";", 1)[0]  # "<id>[;<cluster>]"
        if not first.isdigit():
            raise PermanentBackendError(f"sbatch printed no job id: {out.strip()[:200]!r}")
        return int(first)

    def list_jobs(self) -> list[SlurmJob]:
        """Every job slurmctld still holds, finished ones included. 22.05's `squeue --json` lists them
        unasked; 23.11+ list only pending and running jobs unless asked for every state (24.11's and
        26.05's `squeue-finished.json`), and a step whose job left the listing would never finish."""
        out = self._run(["squeue", "--json", "--states=all"])
        try:
            doc = json.loads(out)
        except ValueError as e:
            raise TransientBackendError(f"squeue --json printed no JSON: {e}") from e
        return parse_squeue_json(doc)

    def cancel(self, job_id: int, user: str) -> None:
        try:
            self._run(["scancel", str(int(job_id))], user=user)
        except PermanentBackendError as e:
            if any(g in str(e).lower() for g in _JOB_GONE):
                return
            raise

    def close(self) -> None:
        return None

    # --- capacity, for the resource daemon ---
    def query_capacity(self, *, refresh_partitions: bool = True) -> CapacitySnapshot:
        """`sinfo --all --json` and `squeue --json` on every call: 2 commands. 22.05's sinfo lists nodes
        without partitions; `scontrol show partition --oneliner` fills in when `refresh_partitions` or
        when a node names a partition the last listing lacked (then 3)."""
        out = self._run(["sinfo", "--all", "--json"])
        try:
            reading = parse_sinfo_json(json.loads(out))
        except ValueError as e:
            raise TransientBackendError(f"sinfo --json printed no usable JSON: {e}") from e
        partitions = reading.partitions
        if not reading.has_partitions:
            if (
                refresh_partitions
                or self._partitions is None
                or not partitions_known(reading, self._partitions)
            ):
                self._partitions = parse_scontrol_partitions(
                    self._run(["scontrol", "show", "partition", "--oneliner"])
                )
            partitions = self._partitions
        return build_capacity_snapshot(reading, partitions, self.list_jobs())

    def _run(
        self, argv: Sequence[str], *, user: str | None = None, stdin: str | None = None, retry: bool = True
    ) -> str:
        cmd = [str(self._bin / argv[0]) if self._bin else argv[0], *argv[1:]]
        if user and user != self._me:
            cmd = ["runuser", "-u", user, "--", *cmd]

        def once() -> str:
            self.commands += 1
            try:
                cp = subprocess.run(
                    cmd,
                    input=stdin,
                    capture_output=True,
                    text=True,
                    env=self._env,
                    timeout=self._timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as e:
                raise TransientBackendError(f"{argv[0]} timed out after {self._timeout}s") from e
            except OSError as e:
                raise PermanentBackendError(f"cannot run {argv[0]}: {e}") from e
            if cp.returncode != 0:
                err = cp.stderr.strip() or cp.stdout.strip()
                raise classify_cli_error(err)(
                    f"{argv[0]} as {user or self._me} failed ({cp.returncode}): {err[:500]}"
                )
            return cp.stdout

        return self._retrying(once) if retry else once()
