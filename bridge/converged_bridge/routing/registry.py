"""The backends the router knows, each by its rules, registered under its name (pure).

Routing, charging and the plan's simulated machine reach a backend only through its `BackendRules`:
which of its targets can take a step and how long it would wait there, the decision that sends a step
there, what a placed step takes from the snapshot, and the pools it offers a run's plan. A backend is
registered once, in `STANDARD_RULES`; the router's own code names no backend. A backend no rule book
holds is an error naming the ones it does (`UnknownBackend`), never another backend's branch.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Protocol

from converged_bridge.api.workflowstep import Backend, Resources, WorkflowStep
from converged_bridge.routing.candidates import Candidate, Refusal
from converged_bridge.routing.kueue import KUEUE_RULES
from converged_bridge.routing.pools import Need, Pool
from converged_bridge.routing.slurm import SLURM_RULES
from converged_bridge.routing.types import (
    CapacityView,
    Decision,
    RouteDecision,
    SiteWeights,
    StepRequest,
)


class UnknownBackend(ValueError):
    """A backend name no rule book (or unit registry) holds."""

    def __init__(self, backend: object, known: Iterable[str]) -> None:
        name = getattr(backend, "value", backend)
        super().__init__(f"no backend {name!r} is registered (registered: {', '.join(known) or 'none'})")
        self.backend = backend


class Ledger(Protocol):
    """One backend's targets in a burst of routing (`route_batch`), with the steps placed so far
    charged to them."""

    def place(self, request: StepRequest, decision: RouteDecision) -> Hashable:
        """Charge a step sent by `decision` (a verified one) to its target; that target's key."""

    def refresh(self, request: StepRequest, candidate: Candidate) -> Candidate:
        """`candidate` with its wait and view as the charges so far left them."""

    def view(self, capacity: CapacityView) -> CapacityView:
        """`capacity` with this backend's targets as charged so far."""


class BackendRules(Protocol):
    """What the router knows of one backend; every method pure."""

    @property
    def backend(self) -> Backend:
        """The backend's name, as WorkflowStep spec.backend spells it."""

    @property
    def targets_named(self) -> str:
        """Its targets, as a refusal says there are none: "Slurm cluster", "Kueue queue"."""

    def candidates(
        self,
        request: StepRequest,
        capacity: CapacityView,
        weights: SiteWeights,
        out: list[Candidate],
        refusals: list[Refusal],
    ) -> None:
        """Append the targets that can ever run `request` to `out` (sort key: weighted wait first), and
        the reason of each that cannot to `refusals`."""

    def startup_seconds(self, weights: SiteWeights) -> float:
        """From submission to running on an idle target (the plan's simulated start-up)."""

    def names_target(self, request: StepRequest) -> bool:
        """`request` names one of this backend's targets itself (the decision is then Explicit)."""

    def target(self, candidate: Candidate) -> Hashable:
        """The target `candidate` sends a step to, as charges count it."""

    def summary(self, request: StepRequest, candidate: Candidate, weights: SiteWeights) -> str:
        """The decision's reason for the chosen `candidate`: its target and what it promises."""

    def decide(
        self, request: StepRequest, candidate: Candidate, decision: Decision, reason: str
    ) -> RouteDecision:
        """The decision that sends `request` to `candidate`."""

    def step_target(self, step: WorkflowStep) -> str:
        """The target a WorkflowStep of this backend names, as `RouteDecision.target` spells it."""

    def charge(
        self, capacity: CapacityView, request: StepRequest, decision: RouteDecision, count: int
    ) -> CapacityView:
        """`capacity` with `count` steps like `request` placed where `decision` (verified) sends them."""

    def ledger(self, capacity: CapacityView, weights: SiteWeights) -> Ledger:
        """A ledger of this backend's targets in `capacity`, for one burst."""

    def pools(self, capacity: CapacityView) -> Iterator[tuple[str, Pool, tuple[str, ...]]]:
        """What its targets offer a run's plan: (pool key, pool, the targets it serves), one per
        target whose capacity is known (targets sharing a pool: the same key, listed again)."""

    def need(self, shape: Resources) -> Need:
        """What a step of `shape` holds on a pool of this backend while it runs."""


class RuleBook:
    """Registered backends' rules, in registration order: the order the router asks them for
    candidates (which candidate wins a tie is each candidate's sort key's business, not this order's)."""

    def __init__(self, rules: Sequence[BackendRules]) -> None:
        self._rules = tuple(rules)
        self._by_name: dict[str, BackendRules] = {str(r.backend): r for r in self._rules}
        if len(self._by_name) != len(self._rules):
            raise ValueError("a backend is registered twice")

    def __iter__(self) -> Iterator[BackendRules]:
        return iter(self._rules)

    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def rules_for(self, backend: Backend | str) -> BackendRules:
        """The rules of `backend`; `UnknownBackend` when none is registered."""
        try:
            return self._by_name[backend]  # a Backend is its name (a str enum): no conversion
        except KeyError:
            raise UnknownBackend(backend, self._by_name) from None

    def with_rules(self, *more: BackendRules) -> RuleBook:
        """This book and `more` (a site's or a test's own backends)."""
        return RuleBook((*self._rules, *more))


# The one registration of each backend's routing side.
STANDARD_RULES = RuleBook((SLURM_RULES, KUEUE_RULES))
