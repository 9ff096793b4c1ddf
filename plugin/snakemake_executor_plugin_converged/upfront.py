"""A job's resources as far as they can be known when the plan is made, before the job runs.

Snakemake gives `<TBD>` for a resource value it cannot evaluate yet, such as a function of an input file
that does not exist before the jobs upstream ran; the plan routes and estimates without it, and the
job's step is made from its resources as snakemake evaluates them when the job is submitted.
"""

from __future__ import annotations

from typing import Any

PENDING = "<TBD>"  # snakemake's TBDString: a value known only once the job's input exists


def is_pending(value: Any) -> bool:
    return isinstance(value, str) and value == PENDING
