"""`route`: one step, one decision, with its reason (pure).

Hard constraints rule candidates out (each registered backend's rules), the weighted expected wait
ranks the rest; an explicit backend or partition wins when feasible, and a refusal names the constraint.
"""

from __future__ import annotations

from converged_bridge.routing.candidates import UNVERIFIED_WAIT, Candidate, Refusal, format_refusal
from converged_bridge.routing.registry import STANDARD_RULES, RuleBook
from converged_bridge.routing.types import (
    CapacityView,
    Decision,
    Preference,
    RouteDecision,
    SiteWeights,
    StepRequest,
)


def route(
    request: StepRequest, capacity: CapacityView, weights: SiteWeights, rules: RuleBook = STANDARD_RULES
) -> RouteDecision:
    """The backend and target for `request`, or a refusal; see the module docstring."""
    candidates, refusals = find_candidates(request, capacity, weights, rules)
    candidates.sort(key=lambda c: c[0])
    return choose(request, candidates, refusals, weights, rules)


def find_candidates(
    request: StepRequest, capacity: CapacityView, weights: SiteWeights, rules: RuleBook = STANDARD_RULES
) -> tuple[list[Candidate], list[Refusal]]:
    """Every registered backend's candidates for `request` (only the asked one's, if it asks), and the
    refusals of the targets that can never run it."""
    candidates: list[Candidate] = []
    refusals: list[Refusal] = []
    asked = None if request.preference is Preference.AUTO else request.preference.value
    for backend in rules:
        if asked is None or str(backend.backend) == asked:
            backend.candidates(request, capacity, weights, candidates, refusals)
    return candidates, refusals


def choose(
    request: StepRequest,
    candidates: list[Candidate],
    refusals: list[Refusal],
    weights: SiteWeights,
    rules: RuleBook = STANDARD_RULES,
) -> RouteDecision:
    """The decision for the first of `candidates` (sorted best first), or a refusal when there are none."""
    if not candidates:
        asked = "" if request.preference == Preference.AUTO else f"converged_backend={request.preference}: "
        configured = " or ".join(r.targets_named for r in rules)
        detail = "; ".join(map(format_refusal, refusals)) or f"no {configured} is configured"
        return RouteDecision(backend=None, decision=Decision.REFUSED, reason=f"{asked}{detail}")
    best = rules.rules_for(candidates[0][1])
    if candidates[0][4] is None:
        decision = Decision.UNVERIFIED
    elif len(candidates) > 1:
        decision = Decision.SHORTEST_WAIT
    elif request.preference != Preference.AUTO or best.names_target(request):
        decision = Decision.EXPLICIT
    else:
        decision = Decision.ONLY_FEASIBLE
    reason = best.summary(request, candidates[0], weights)
    if len(candidates) > 1:
        runner_up = candidates[1]
        beaten = runner_up[0][0]
        told = "unverified" if beaten == UNVERIFIED_WAIT else f"weighted wait {beaten:.0f}s"
        reason += f"; beats {runner_up[1]} {runner_up[0][3]} ({told})"
    elif refusals:
        reason += f"; not {format_refusal(refusals[0])}"
    return best.decide(request, candidates[0], decision, reason)
