"""The Kueue backend's decisions for one WorkflowStep (pure: observed objects in, intents out).

`plan_kueue_step` creates the step's operator object once and follows it through its Workload and
pods; `plan_kueue_cleanup` deletes it when the step is deleted. The controller adds and removes the
finalizer and skips finished steps itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from converged_bridge.api.workflowstep import BackendRef, Phase, WorkflowStep
from converged_bridge.backends.kueue.intents import CreateObject, DeleteObject
from converged_bridge.backends.kueue.operators import OPERATORS, BuiltObject, KueueSite, build_operator_object
from converged_bridge.backends.kueue.outcome import image_pull_failure, map_kueue_status
from converged_bridge.errors import InvalidStep
from converged_bridge.reconcile.intents import Intent
from converged_bridge.reconcile.status import TERMINAL_PHASES, StatusTiming, plan_status


@dataclass(frozen=True)
class KueueView:
    """What the controller observed this cycle about the Kubernetes side of one step."""

    site: KueueSite
    obj: Mapping[str, Any] | None  # the operator object carrying the step's UID label
    workload: Mapping[str, Any] | None  # Kueue's Workload for it (or for the Job a MiniCluster made)
    pods: Sequence[Mapping[str, Any]]
    timing: StatusTiming
    served_kinds: frozenset[str] | None = None  # kinds (`Kind.kind`) this API server serves; None: all


def plan_kueue_cleanup(step: WorkflowStep, view: KueueView) -> list[Intent]:
    """A deleted step: delete its object, which takes its pods with it."""
    if view.obj is None:
        return []
    kind = OPERATORS[step.spec.operator].kind
    return [DeleteObject(kind, step.metadata.namespace or "default", str(view.obj["metadata"]["name"]))]


def plan_kueue_step(step: WorkflowStep, view: KueueView) -> list[Intent]:
    """Intents that move a running `step` toward its object's truth. Order matters; apply in sequence."""
    operator = OPERATORS[step.spec.operator]
    if view.obj is None:
        try:
            built = build_operator_object(step, view.site)
        except InvalidStep as e:
            return _fail(step, view, "InvalidSpec", f"invalid for Kubernetes: {e}")
        if view.served_kinds is not None and built.kind.kind not in view.served_kinds:
            message = (
                f"operator {operator.operator.value}: this cluster does not serve "
                f"{built.kind.api_version} {built.kind.kind}"
            )
            return _fail(step, view, "OperatorNotInstalled", message)
        namespace = step.metadata.namespace or "default"
        return [CreateObject(built.kind, namespace, built.body), *_created(step, view, built)]

    name = str(view.obj["metadata"]["name"])
    workload = (view.workload or {}).get("metadata", {}).get("name")
    ref = BackendRef.for_object(operator.backend_kind, name, workload)
    out = map_kueue_status(operator.kind.kind, view.obj, view.workload, view.pods)
    pull = image_pull_failure(view.pods) if out.phase not in TERMINAL_PHASES else None
    if pull is not None:  # it would wait for ever: end it, and free its quota
        namespace = step.metadata.namespace or "default"
        return [
            DeleteObject(operator.kind, namespace, name),
            *plan_status(
                step,
                phase=Phase.FAILED,
                reason=pull[0],
                message=f"{ref.display}: {pull[1]}",
                backend_ref=ref,
                warn=True,
                timing=view.timing,
            ),
        ]
    return plan_status(
        step,
        phase=out.phase,
        reason=out.reason,
        message=out.message,
        backend_ref=ref,
        exit_code=out.exit_code,
        start_time=out.start_time,
        completion_time=out.completion_time,
        log_tail=out.log_tail,
        timing=view.timing,
    )


def _fail(step: WorkflowStep, view: KueueView, reason: str, message: str) -> list[Intent]:
    return plan_status(
        step, phase=Phase.FAILED, reason=reason, message=message, warn=True, timing=view.timing
    )


def _created(step: WorkflowStep, view: KueueView, built: BuiltObject) -> list[Intent]:
    ref = BackendRef.for_object(OPERATORS[step.spec.operator].backend_kind, built.name)
    message = f"created {ref.display}; waiting for Kueue"
    return plan_status(
        step, phase=Phase.QUEUED, reason="Created", message=message, backend_ref=ref, timing=view.timing
    )
