"""Where a workflow step runs: Slurm or Kueue. Pure — a capacity snapshot in, one decision out.

Modules: `types` (request, views, decision), `registry` (the backends the router knows: each one's
`BackendRules`, registered once in `STANDARD_RULES`), `slurm` and `kueue` (each backend's rules:
`slurm_rules` and `kueue_rules` hold its hard constraints and expected wait, `charging` what a placed
step takes), `route` (one step), `batch` (a burst on one snapshot, and `charge`), `pools` (what a
target offers a run's plan), `capacity` (the snapshot built from Kubernetes objects). Nothing outside
a backend's own modules names it.

`route(request, capacity, weights)` works in two passes:

1. **Hard constraints** rule candidates out, each with the reason why: the GPU model must exist on
   that side, the runtime must fit the partition's time limit, an MPI step must fit the partition
   (nodes, tasks x cpus) or have an MPI-capable operator on Kubernetes, the operator must be installed,
   a Kubernetes step needs a container image.
2. **Expected wait** ranks what is left: zero when the step fits into idle capacity and nothing is
   pending ahead of it, otherwise the work queued ahead divided by the slots that serve it. Each side
   adds its start-up latency and multiplies by its site weight.

An explicit backend (`converged_backend`) or partition wins when feasible; when it is not, the
decision is a refusal naming the constraint. Every decision carries a one-line reason.

A snapshot does not know the steps routed since it was read: `charge` counts a placed step against it
(idle CPUs, GPUs or free quota while they last, then one more queued job), and `route_batch` routes a
burst charging each step as it is placed, so equal steps fill their best target and then spread to the
next instead of herding onto the first.

A SlurmCluster whose status the resource daemon has not written yet has unknown capacity: its default
(or the requested) partition is accepted unverified, and the reason says so.
"""

from converged_bridge.routing.batch import charge, route_batch
from converged_bridge.routing.registry import STANDARD_RULES, BackendRules, RuleBook, UnknownBackend
from converged_bridge.routing.route import route
from converged_bridge.routing.types import (
    MPI_OPERATORS,
    CapacityView,
    Decision,
    KueueFlavorView,
    KueueQueueView,
    Preference,
    RouteDecision,
    SiteWeights,
    SlurmClusterView,
    SlurmPartitionView,
    StepRequest,
)

__all__ = [
    "MPI_OPERATORS",
    "STANDARD_RULES",
    "BackendRules",
    "CapacityView",
    "Decision",
    "KueueFlavorView",
    "KueueQueueView",
    "Preference",
    "RouteDecision",
    "RuleBook",
    "SiteWeights",
    "SlurmClusterView",
    "SlurmPartitionView",
    "StepRequest",
    "UnknownBackend",
    "charge",
    "route",
    "route_batch",
]
