"""The WorkflowStep controller: pure decisions (status, reconcile plans) and the loop applying them."""
