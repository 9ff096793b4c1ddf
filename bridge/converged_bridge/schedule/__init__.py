"""The plan as a schedule: the DAG simulated on the capacity snapshot, its groups and its cost (pure).

Modules: `types` (the simulated machine, steps, estimates), `machine` (pools from the router's
`CapacityView`, a step's need on its backend), `simulate` (list scheduling by critical path),
`groups` (consecutive steps of one shape, named), `usage` (CPU-, memory- and GPU-hours) and
`annotations` (the plan as a WorkflowStep carries it), `allocations` (slots and time limit of a group's
allocation).
"""

from converged_bridge.schedule.allocations import (
    count_concurrent,
    count_fit,
    plan_allocation_minutes,
    plan_slots,
)
from converged_bridge.schedule.annotations import (
    DEPENDS_ON_MAX,
    StepPlanNotes,
    build_plan_annotations,
    parse_plan_annotations,
)
from converged_bridge.schedule.groups import GroupMember, StepGroup, plan_groups
from converged_bridge.schedule.machine import build_machine, build_need
from converged_bridge.schedule.simulate import simulate_schedule
from converged_bridge.schedule.types import Machine, Need, Pool, Schedule, SimStep, Slot, StepEstimate
from converged_bridge.schedule.usage import Usage, build_usage, sum_usage

__all__ = [
    "DEPENDS_ON_MAX",
    "GroupMember",
    "Machine",
    "Need",
    "Pool",
    "Schedule",
    "SimStep",
    "Slot",
    "StepEstimate",
    "StepGroup",
    "StepPlanNotes",
    "Usage",
    "build_machine",
    "build_need",
    "build_plan_annotations",
    "build_usage",
    "count_concurrent",
    "count_fit",
    "parse_plan_annotations",
    "plan_allocation_minutes",
    "plan_groups",
    "plan_slots",
    "simulate_schedule",
    "sum_usage",
]
