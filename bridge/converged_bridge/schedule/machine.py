"""The simulated machine from the router's capacity snapshot, and a step's need on it (pure).

Each registered backend's rules say what its targets offer (`BackendRules.pools`: a Slurm partition is
a pool of its nodes, CPUs, memory and GPUs split evenly; a Kueue ClusterQueue a pool of its flavors'
nominal quota) and what a step holds there (`BackendRules.need`). Pools are the targets' whole
capacity: other users' work on them is not counted, and partitions sharing nodes are counted once each.
"""

from __future__ import annotations

from converged_bridge.api.workflowstep import Backend, Resources
from converged_bridge.routing import STANDARD_RULES, CapacityView, RuleBook
from converged_bridge.schedule.types import Machine, Need, Pool


def build_machine(capacity: CapacityView, rules: RuleBook = STANDARD_RULES) -> Machine:
    """One pool per target whose capacity is known, from each registered backend."""
    pools: dict[str, Pool] = {}
    targets: dict[str, str] = {}
    for backend in rules:
        for key, pool, served in backend.pools(capacity):
            pools.setdefault(key, pool)  # LocalQueues of one ClusterQueue share its pool
            for target in served:
                targets[target] = key
    return Machine(pools=pools, targets=targets)


def build_need(shape: Resources, backend: Backend, rules: RuleBook = STANDARD_RULES) -> Need:
    """What a step of `shape` holds on `backend`'s pools (`UnknownBackend` for one not registered)."""
    return rules.rules_for(backend).need(shape)
