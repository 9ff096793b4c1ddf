"""Steps grouped into StepAllocations: one backend allocation runs a group's steps in turn, each step
keeping its own WorkflowStep.

Modules: `paths` (where the hand-over happens), `agent` (the bash loop inside the allocation), `handover`
(the controller's reads and writes of the hand-over directories), `steps` and `plan` (pure decisions for a
grouped step and for an allocation), `intents`, and `keeper` (what a backend unit composes to drive its
allocations). Backend-specific parts — the allocation's job, each step's script — live in the backends.
"""
