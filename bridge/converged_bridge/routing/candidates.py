"""The router's working records: a candidate target and a refusal, kept as plain tuples because
`route` builds thousands per second (pure)."""

from __future__ import annotations

from typing import Any

from converged_bridge.api.workflowstep import Backend, Operator

# A candidate, kept as a plain tuple because route() builds thousands per second:
# (sort key, backend, its target's view, a detail of it or None, unweighted wait or None, operator):
# on Slurm the cluster and partition views, on Kueue the LocalQueue's view and None.
# The sort key is (weighted wait, spares GPUs, backend's rank, target name): equal waits keep GPU
# partitions for GPU steps, then prefer Slurm, then go by name, so the decision is deterministic.
Key = tuple[float, bool, bool, str]
# The weighted wait of a target converged cannot vouch for — a SlurmCluster whose capacity is not known
# yet, or one the daemon could not reach at its last look: ranked after every verified target, so it is
# chosen only when nothing else can take the step.
UNVERIFIED_WAIT = float("inf")
Candidate = tuple[Key, Backend, Any, Any, float | None, Operator]
# A refusal, formatted only when a reason needs it: (side and target, template, arguments)
Refusal = tuple[str, str, tuple[Any, ...]]


def format_refusal(refusal: Refusal) -> str:
    where, template, args = refusal
    return f"{where}: {template.format(*args)}"
