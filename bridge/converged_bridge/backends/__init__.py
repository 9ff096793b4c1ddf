"""Backends as units behind one interface (`base.BackendUnit`): `slurm/` and `kueue/`, each with the
same layout — `intents` (what only it can do), `plan` (pure decisions), `outcome` (what its job's state
means for the step) and `unit` (observe, execute)."""
