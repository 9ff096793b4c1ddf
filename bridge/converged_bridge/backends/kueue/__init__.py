"""The Kueue backend: a step is one operator object (Job, JobSet, MPIJob, MiniCluster) Kueue admits."""

from converged_bridge.backends.kueue.unit import KueueBackend

__all__ = ["KueueBackend"]
