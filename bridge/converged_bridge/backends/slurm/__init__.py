"""The Slurm backend: a step is one batch job (in a container runtime) submitted exactly once."""

from converged_bridge.backends.slurm.unit import SlurmBackend

__all__ = ["SlurmBackend"]
