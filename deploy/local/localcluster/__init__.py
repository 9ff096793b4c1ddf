"""The local converged cluster: Slurm, Kubernetes, Kueue and kwok on loopback.

Standard library only: this runs before the project's virtualenv exists.
"""
