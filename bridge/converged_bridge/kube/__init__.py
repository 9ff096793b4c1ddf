"""Kubernetes access: the only package of converged that imports the kubernetes client."""
