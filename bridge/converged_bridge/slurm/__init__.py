"""Slurm backend: batch scripts for steps (pure) and, later, the Slurm transports."""
