"""The one interface the controller and the daemon use to talk to a Slurm cluster.

Two transports implement it: slurmrestd (`restd.py`) and the Slurm CLI (`cli.py`). Errors come out as
`TransientBackendError` (retry later) or `PermanentBackendError` (report, do not retry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from converged_bridge.slurm.batch_script import BatchOptions
from converged_bridge.slurm.jobs import SlurmJob


@dataclass(frozen=True)
class Submission:
    """One batch job to submit: the script plus its options (restd cannot read #SBATCH lines)."""

    script: str
    options: BatchOptions
    working_dir: str
    user: str  # the Slurm (Unix) user the job runs as


class SlurmTransport(Protocol):
    def server_version(self) -> str:
        """Slurm's release, e.g. '22.05.8'."""
        ...

    def submit(self, submission: Submission) -> int:
        """Submit one job as `submission.user`; returns the job id."""
        ...

    def list_jobs(self) -> list[SlurmJob]:
        """Every job slurmctld knows (pending, running, recently finished): one query, whatever the count."""
        ...

    def cancel(self, job_id: int, user: str) -> None:
        """Cancel a job as `user`; cancelling a job that already ended is not an error."""
        ...

    def close(self) -> None: ...
