"""Groups: consecutive steps of one shape (backend, target, resources, image), each of which one
allocation could serve in turn (pure).

Steps are taken in start order (topological level, then rule, then job id); a group ends where the
next step has another shape. Each group is named (`g1`, `g2`, ... in that order), so its steps can
carry the name (the WorkflowStep label `converged.dev/group` of an allocation that runs them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GroupMember:
    """One step as grouping sees it; `shape` describes resources and image on its target."""

    job_id: int
    level: int
    rule: str
    backend: str
    target: str
    shape: str

    @property
    def order(self) -> tuple[int, str, int]:
        return (self.level, self.rule, self.job_id)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.backend, self.target, self.shape)


@dataclass(frozen=True)
class StepGroup:
    name: str
    backend: str
    target: str
    shape: str
    job_ids: tuple[int, ...]


def plan_groups(members: Sequence[GroupMember]) -> tuple[StepGroup, ...]:
    """The groups of consecutive steps of one shape, in start order, named g1, g2, ..."""
    runs: list[list[GroupMember]] = []
    for member in sorted(members, key=lambda m: m.order):
        if runs and runs[-1][0].key == member.key:
            runs[-1].append(member)
        else:
            runs.append([member])
    return tuple(
        StepGroup(f"g{number}", *run[0].key, tuple(m.job_id for m in run))
        for number, run in enumerate(runs, start=1)
    )
