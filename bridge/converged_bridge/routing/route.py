"""`route`: one step, one decision, with its reason (pure).

Hard constraints rule candidates out (slurm_rules, kueue_rules), the weighted expected wait ranks the
rest; an explicit backend or partition wins when feasible, and a refusal names the constraint.
"""

from __future__ import annotations

from converged_bridge.api.workflowstep import Backend
from converged_bridge.routing.candidates import (
    UNVERIFIED_WAIT,
    Candidate,
    Refusal,
    asked_partition,
    format_refusal,
)
from converged_bridge.routing.kueue_rules import kueue_candidates, kueue_wait_text
from converged_bridge.routing.slurm_rules import slurm_candidates, slurm_wait_text
from converged_bridge.routing.types import (
    CapacityView,
    Decision,
    Preference,
    RouteDecision,
    SiteWeights,
    StepRequest,
)


def route(request: StepRequest, capacity: CapacityView, weights: SiteWeights) -> RouteDecision:
    """The backend and target for `request`, or a refusal; see the module docstring."""
    candidates, refusals = find_candidates(request, capacity, weights)
    candidates.sort(key=lambda c: c[0])
    return choose(request, candidates, refusals, weights)


def find_candidates(
    request: StepRequest, capacity: CapacityView, weights: SiteWeights
) -> tuple[list[Candidate], list[Refusal]]:
    candidates: list[Candidate] = []
    refusals: list[Refusal] = []
    if request.preference is not Preference.KUEUE:
        slurm_candidates(request, capacity, weights, candidates, refusals)
    if request.preference is not Preference.SLURM:
        kueue_candidates(request, capacity, weights, candidates, refusals)
    return candidates, refusals


def choose(
    request: StepRequest, candidates: list[Candidate], refusals: list[Refusal], weights: SiteWeights
) -> RouteDecision:
    """The decision for the first of `candidates` (sorted best first), or a refusal when there are none."""
    if not candidates:
        asked = "" if request.preference == Preference.AUTO else f"converged_backend={request.preference}: "
        detail = "; ".join(map(format_refusal, refusals)) or "no Slurm cluster or Kueue queue is configured"
        return RouteDecision(backend=None, decision=Decision.REFUSED, reason=f"{asked}{detail}")
    _, backend, where, partition, wait, operator = candidates[0]
    if wait is None:
        decision = Decision.UNVERIFIED
    elif len(candidates) > 1:
        decision = Decision.SHORTEST_WAIT
    elif request.preference != Preference.AUTO or request.slurm_partition:
        decision = Decision.EXPLICIT
    else:
        decision = Decision.ONLY_FEASIBLE
    reason = summary(request, candidates[0], weights)
    if len(candidates) > 1:
        runner_up = candidates[1]
        beaten = runner_up[0][0]
        told = "unverified" if beaten == UNVERIFIED_WAIT else f"weighted wait {beaten:.0f}s"
        reason += f"; beats {runner_up[1].value} {runner_up[0][3]} ({told})"
    elif refusals:
        reason += f"; not {format_refusal(refusals[0])}"
    if backend == Backend.SLURM:
        return RouteDecision(
            backend=backend,
            decision=decision,
            reason=reason,
            operator=operator,
            slurm_cluster=where.name,
            slurm_partition=partition.name if partition is not None else asked_partition(request, where),
            expected_wait_seconds=wait,
        )
    return RouteDecision(
        backend=backend,
        decision=decision,
        reason=reason,
        operator=operator,
        local_queue=where.local_queue,
        expected_wait_seconds=wait,
    )


def summary(request: StepRequest, candidate: Candidate, weights: SiteWeights) -> str:
    key, backend, where, partition, _, _ = candidate
    if backend == Backend.SLURM:
        if partition is None:
            return f"slurm {key[3]}: capacity unknown (SlurmCluster has no status yet), accepted unverified"
        if not where.reachable:
            return (
                f"slurm {key[3]}: cluster unreachable at the daemon's last look (capacity as last seen), "
                "accepted unverified: the step waits until the cluster answers"
            )
        return f"slurm {key[3]}: {slurm_wait_text(request, partition, weights)}"
    return f"kueue {key[3]}: {kueue_wait_text(request, where, weights)}"
