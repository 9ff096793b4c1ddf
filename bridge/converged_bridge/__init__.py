"""converged bridge: WorkflowStep models, routing, Slurm and Kubernetes access, the controller."""
