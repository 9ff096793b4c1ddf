"""Groups: consecutive steps of one shape (backend, target, resources, image), each of which one
allocation could serve in turn (pure).

Steps are taken level by level (topological level: no step depends on another of its level), and within
a level shape by shape (first the shape the level before ended with), then by rule and job id; a group
ends where the next step has another shape.
So the steps of a fan-out that the router spread over several targets make one group per target, not a
new group at every change of target in job-id order; a chain of one shape stays one group from level to
level. Each group is named (`g1`, `g2`, ... in that order), so its steps can carry the name (the
WorkflowStep label `converged.dev/group` of an allocation that runs them).
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
    """The groups of consecutive steps of one shape, level by level (module docstring), named g1, g2, ..."""
    levels: dict[int, dict[tuple[str, str, str], list[GroupMember]]] = {}
    for member in sorted(members, key=lambda m: (m.rule, m.job_id)):
        levels.setdefault(member.level, {}).setdefault(member.key, []).append(member)
    runs: list[list[GroupMember]] = []
    for level in sorted(levels):
        by_shape = levels[level]
        last = runs[-1][0].key if runs else None
        # the shape the level before ended with goes first, so that a chain of it stays one group
        for key in sorted(by_shape, key=lambda k: (k != last, k)):
            if runs and runs[-1][0].key == key:
                runs[-1].extend(by_shape[key])
            else:
                runs.append(list(by_shape[key]))
    return tuple(
        StepGroup(f"g{number}", *run[0].key, tuple(m.job_id for m in run))
        for number, run in enumerate(runs, start=1)
    )
