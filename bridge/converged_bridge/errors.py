"""Errors converged raises about the objects it is given."""

from __future__ import annotations


class InvalidStep(ValueError):
    """A WorkflowStep (or the SlurmCluster it targets) that cannot run as specified.

    Permanent: retrying cannot help, the step fails with this message. `field` names the offending
    field as the Kubernetes API spells it (e.g. `spec.slurm.partition`).
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
