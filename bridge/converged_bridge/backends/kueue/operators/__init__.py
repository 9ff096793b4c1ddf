"""The operator kinds a Kubernetes-backed step can be, one module each. To add one: a module with a
pure `build_<kind>(step, site)` and its `KIND`, listed here."""

from __future__ import annotations

from collections.abc import Mapping

from converged_bridge.api.workflowstep import Operator, WorkflowStep
from converged_bridge.backends.kueue.operators import job, jobset, minicluster, mpijob
from converged_bridge.backends.kueue.operators.common import BuiltObject, KueueSite
from converged_bridge.backends.kueue.operators.kind import OperatorKind
from converged_bridge.errors import InvalidStep

OPERATORS: Mapping[Operator, OperatorKind] = {
    m.KIND.operator: m.KIND for m in (job, jobset, mpijob, minicluster)
}


def build_operator_object(step: WorkflowStep, site: KueueSite) -> BuiltObject:
    """The object for the step's operator (pure)."""
    if step.spec.rule_images and step.spec.operator != Operator.JOB:
        raise InvalidStep(
            "spec.ruleImages",
            "a step in its rule's own image runs as a batch Job (operator job), "
            f"not {step.spec.operator.value}",
        )
    return OPERATORS[step.spec.operator].build(step, site)


__all__ = ["OPERATORS", "BuiltObject", "KueueSite", "OperatorKind", "build_operator_object"]
