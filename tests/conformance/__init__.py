"""Snakemake's own test workflows as converged's conformance suite (issue 23).

From snakemake's source distribution (the version the site's users run), every folder of its tests/
with a Snakefile and expected-results/ is run as a site user on the local site: once with snakemake's
local executor (which of them pass on this machine), then through `snakemake --executor converged`
with every step routed to Slurm, then to Kueue, each result compared with expected-results as
snakemake's own tests compare them (tests/common.py `run()`).

    python -m tests.conformance                     # all of them (make conformance)
    python -m tests.conformance --only test_temp    # some
"""
