"""A job's resources as far as they can be known when the plan is made, before the job runs.

Snakemake evaluates a job's resources just before the job runs (its scheduler resets them once the
job's input exists), and its own test suite holds it to that: a resource function of the workflow may
read the job's input, or assert that it exists (tests/test_lazy_resources). The plan is made before
any job ran, so it calls none of the workflow's own functions (a rule's `resources:` or `threads:`
given as a function): their values are "not known yet", snakemake's own `<TBD>`. What is declared
as a value is read as it is, and snakemake's own expressions (`--default-resources`,
`--set-resources`, a profile: `mem_mb="2*input.size_mb"`) are evaluated as snakemake's dry run does,
`<TBD>` while an input they read does not exist yet. The job's step is made from its resources as
snakemake evaluates them when the job is submitted (`Executor.run_job`), not from these.
"""

from __future__ import annotations

import inspect
from typing import Any

PENDING = "<TBD>"  # snakemake's TBDString: a value known only once the job's input exists


def is_pending(value: Any) -> bool:
    return isinstance(value, str) and value == PENDING


def is_workflow_function(resource: Any) -> bool:
    """A resource given as a function of the workflow (not a value, not one of snakemake's own
    expression evaluators, which wrap command-line and profile expressions)."""
    evaluator = getattr(resource, "_evaluator", None)
    if evaluator is None:
        return False
    inner = inspect.unwrap(evaluator)
    own = getattr(inner, "__module__", "") == "snakemake.resources" and "from_cli_expression" in getattr(
        inner, "__qualname__", ""
    )
    return not own


def read_upfront_resources(job: Any) -> dict[str, Any]:
    """The resources of snakemake job `job` (not a group job) as the plan may know them: a mapping as
    `job.resources` gives it (threads as `_cores`), with `<TBD>` for what is not known yet (module
    docstring). Reads input file sizes where snakemake's expressions ask for them."""
    from snakemake.common.tbdstring import TBDString
    from snakemake.exceptions import NestedCoroutineError
    from snakemake.resources import Resource

    rule = job.rule
    declared = rule.resources
    workflow = rule.workflow

    def evaluate(resource: Any, threads: Any) -> Any:
        if is_workflow_function(resource) or resource.name == "tmpdir":  # tmpdir: where the job runs
            return Resource(resource.name, TBDString())
        try:
            value, _ = rule.apply_input_function(
                resource.evaluate,
                job.wildcards_dict,
                input=job.input,
                attempt=job.attempt,
                incomplete_checkpoint_func=lambda e: 0,
                raw_exceptions=True,
                rulename=rule.name,
                async_run=workflow.async_run,
                threads=threads,
            )
        except NestedCoroutineError:  # as snakemake's own expansion: an input size read inside its loop
            return Resource(resource.name, TBDString())
        except Exception:
            if is_pending(threads):  # an expression of the threads, which are not known yet
                return Resource(resource.name, TBDString())
            raise
        return value

    cores = declared["_cores"]
    threads: Any = TBDString()
    if not is_workflow_function(cores):
        threads = (
            evaluate(cores, None)
            .constrain(workflow.resource_settings.max_threads)
            .constrain(workflow.global_resources.get("_cores"))
            .value
        )
    found = {
        name: value
        for name, value in declared.expand_items(
            constraints=workflow.global_resources,
            evaluate=lambda r: evaluate(r, threads),
            skip={"_cores"},
        )
        if value is not None
    }
    found["_cores"] = threads
    return found
