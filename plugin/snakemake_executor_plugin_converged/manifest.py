"""The WorkflowStep for one snakemake job. Pure: job facts and the route in, a checked manifest out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from snakemake_interface_common.exceptions import WorkflowError

from converged_bridge.api.base import describe_validation_error
from converged_bridge.api.meta import ObjectMeta
from converged_bridge.api.workflowstep import (
    Backend,
    EnvVar,
    KueuePlacement,
    Route,
    RuleImage,
    SlurmPlacement,
    WorkflowJob,
    WorkflowStep,
    WorkflowStepSpec,
)
from converged_bridge.routing import RouteDecision
from converged_bridge.wire import FINALIZER, RULE_ANNOTATION, RULE_LABEL, RUN_LABEL
from snakemake_executor_plugin_converged.naming import build_rule_label, build_step_name
from snakemake_executor_plugin_converged.resources import StepResources

WILDCARDS_MAX = 64
WILDCARD_VALUE_MAX = 1024


@dataclass(frozen=True)
class JobFacts:
    """What the manifest needs from a snakemake job and the run."""

    namespace: str
    run_id: str
    rule: str
    jobid: int
    attempt: int
    command: str  # the job's exec command, one shell line
    working_dir: str
    wildcards: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)  # the plan's (schedule.annotations)
    keep_finished_seconds: int | None = None  # spec.ttlSecondsAfterFinished; None: the controller's default
    rule_images: tuple[tuple[str, str], ...] = ()  # (url, path) of the rule's own images (jobinfo)
    declared_retry: bool = False  # run again at the declared limits (named apart from the killed step)


def build_step_manifest(facts: JobFacts, resources: StepResources, decision: RouteDecision) -> dict[str, Any]:
    """The WorkflowStep manifest; raises WorkflowError naming the rule when the step would be invalid."""
    if decision.backend is None:
        raise WorkflowError(f"rule {facts.rule}: no backend can run this step: {decision.reason}")
    name = build_step_name(facts.run_id, facts.rule, facts.jobid, facts.attempt, facts.declared_retry)
    wildcards = {k: str(v)[:WILDCARD_VALUE_MAX] for k, v in list(facts.wildcards.items())[:WILDCARDS_MAX]}
    env = []
    for key, value in sorted(facts.env.items()):
        try:
            env.append(EnvVar(name=key, value=value))
        except ValidationError as e:
            problem = e.errors()[0]["msg"]
            raise WorkflowError(f"rule {facts.rule}: environment variable {key!r}: {problem}") from e
    try:
        step = WorkflowStep(
            metadata=ObjectMeta(
                name=name,
                namespace=facts.namespace,
                labels={RUN_LABEL: facts.run_id, RULE_LABEL: build_rule_label(facts.rule)},
                annotations={**facts.annotations, RULE_ANNOTATION: facts.rule},
                # the controller's finalizer from the start: it need not patch every new step to add it
                finalizers=[FINALIZER],
            ),
            spec=WorkflowStepSpec(
                workflow=WorkflowJob(
                    run_id=facts.run_id, rule=facts.rule, job_id=facts.jobid, wildcards=wildcards
                ),
                backend=decision.backend,
                route=Route(decision=decision.decision.value, reason=decision.reason[:1024]),
                operator=decision.operator,
                image=resources.image_for(decision.backend),
                rule_images=[RuleImage(url=url, path=path) for url, path in facts.rule_images],
                command=["/bin/sh", "-c", facts.command],
                working_dir=facts.working_dir,
                env=env,
                resources=resources.shape,
                slurm=SlurmPlacement(
                    cluster=decision.slurm_cluster,
                    partition=decision.slurm_partition,
                    account=resources.slurm_account,
                    qos=resources.qos,
                )
                if decision.backend == Backend.SLURM
                else None,
                kueue=KueuePlacement(local_queue=(decision.local_queue or "").rpartition("/")[2] or None)
                if decision.backend == Backend.KUEUE
                else None,
                ttl_seconds_after_finished=facts.keep_finished_seconds,
            ),
        )
    except ValidationError as e:
        problems = describe_validation_error(e)
        raise WorkflowError(f"rule {facts.rule}: cannot build its WorkflowStep: {problems}") from e
    return step.to_manifest()
