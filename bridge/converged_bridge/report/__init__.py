"""What a run did, beside what its plan said: the summary (text) and the HTML report (pure).

Modules: `record` (a WorkflowStep as the report reads it), `summary` and `text` (makespan and
CPU/memory/GPU-hours, estimate beside measure), `html` with `dag` and `timeline` (the page
`kubectl converged report RUN` prints). The CLI and the plugin do the reading.
"""
