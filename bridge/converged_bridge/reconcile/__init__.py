"""What every backend's decision is made of: the generic intents and the WorkflowStep status (pure)."""
