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


class BackendError(RuntimeError):
    """A backend (Slurm or Kubernetes) did not do what was asked; `codes` are its error numbers."""

    def __init__(self, message: str, codes: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.codes = codes


class TransientBackendError(BackendError):
    """Worth retrying: the backend was unreachable, busy or timed out."""


class PermanentBackendError(BackendError):
    """Retrying cannot help: the backend refused the request (bad input, no permission, no such job)."""
