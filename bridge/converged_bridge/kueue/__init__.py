"""Kueue backend: operator objects built from WorkflowSteps (pure), and their status read back."""
