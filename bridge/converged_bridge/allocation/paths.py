"""Where a StepAllocation's hand-over happens on the shared filesystem (pure).

Two directories, one per writer, so each side writes only where its own identity may:
- the **spool** (the controller writes, the agent reads): `inbox/<step uid>` (the step's script, made
  by a rename, so the agent never sees half a file), `cancel/<step uid>` (stop or skip that step),
  `closed` (no step will come any more), and `tmp/` for the renames. By default it is in the run's
  directory (`.converged/spool/<allocation>-<uid8>`), which works for a controller running as the user
  (embedded) or as root; a deployed controller, which may not write into users' directories, gets a
  spool of its own (`--allocation-spool DIR`: `DIR/<namespace>/<allocation uid>`).
- the **state** (the agent writes, the controller reads): `claimed/<uid>`, `started/<uid>` (start time),
  `done/<uid>` (exit code, start and end), always in the run's directory
  (`.converged/allocations/<allocation>-<uid8>`), made by the agent as the user it runs as.
Each step's output goes to `.converged/logs/converged-<step uid>.log`, as for a step run alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from converged_bridge.api.meta import UID_PATTERN
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.errors import InvalidStep

# the agent's paths go into its script; quoting makes them safe there, this keeps them readable and
# free of what a Slurm --output path or a `read` of a step file would trip on
_PATH = re.compile(r"/[A-Za-z0-9_./+,:=@~-]*")
_UID = re.compile(UID_PATTERN)


@dataclass(frozen=True)
class AllocationPaths:
    spool: str  # the controller's: inbox/, cancel/, closed, tmp/
    state: str  # the agent's: claimed/, started/, done/
    logs: str  # each step's log, and the agent's own

    def inbox(self, uid: str) -> str:
        return f"{self.spool}/inbox/{uid}"

    def cancel(self, uid: str) -> str:
        return f"{self.spool}/cancel/{uid}"

    @property
    def closed(self) -> str:
        return f"{self.spool}/closed"

    def step_log(self, uid: str) -> str:
        return f"{self.logs}/converged-{uid}.log"


def build_allocation_paths(allocation: StepAllocation, spool_root: str | None = None) -> AllocationPaths:
    """The allocation's directories; `spool_root` is the controller's own spool (None: the run's)."""
    meta = allocation.metadata
    uid = meta.uid or ""
    if not _UID.fullmatch(uid):
        raise InvalidStep("metadata.uid", f"{uid!r} is not a Kubernetes UID")
    name = meta.name or ""
    base = _checked("spec.workingDir", allocation.spec.working_dir.rstrip("/") or "/")
    own = f"{name}-{uid[:8]}"
    if spool_root:
        spool = f"{_checked('allocation spool', spool_root.rstrip('/'))}/{meta.namespace}/{uid}"
    else:
        spool = f"{base}/.converged/spool/{own}"
    return AllocationPaths(
        spool=_checked("spool", spool),
        state=_checked("state", f"{base}/.converged/allocations/{own}"),
        logs=f"{base}/.converged/logs",
    )


def _checked(field: str, path: str) -> str:
    if not _PATH.fullmatch(path):
        raise InvalidStep(field, f"{path!r} must be an absolute path of [A-Za-z0-9_./+,:=@~-]")
    return path
