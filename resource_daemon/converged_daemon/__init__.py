"""converged resource daemon: mirrors Slurm capacity into Kubernetes and hosts the controller."""
