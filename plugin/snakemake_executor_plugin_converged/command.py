"""What converged adds to the command line of a job's own snakemake (the one that runs in the step).

`--notemp` for a single job: the main snakemake removes the job's temporary outputs once no job needs
them, after it has seen them. Left to itself, the job's snakemake removes a temporary output no other
job needs when the job's rule is the workflow's default target (snakemake's `dag.handle_temp`: the job
is one of its targets, and its rule is the first one), before the main snakemake checks the job's
outputs: "Removing temporary output b", then MissingOutputException (snakemake's test_issue894).
Otherwise it removes none for a single job: it keeps every temporary file the main snakemake did not
name as unneeded (`--unneeded-temp-files`, the job's own outputs only), so the flag changes nothing
else.

A group job keeps its own handling: its snakemake removes what its members pass to each other once
they are done, which may be on the node only (`temp(..., group_jobs=True)`) where the main snakemake
cannot remove it, and the main snakemake does not miss a temporary output not needed outside the group.
"""

from __future__ import annotations


def build_job_args(is_group: bool) -> list[str]:
    """The arguments converged adds to a job's own snakemake (module docstring)."""
    return [] if is_group else ["--notemp"]
