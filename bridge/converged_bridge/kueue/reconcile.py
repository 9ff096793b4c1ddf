"""The Kueue backend's reconcile decision for one WorkflowStep (pure: observations in, intents out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from converged_bridge.api.workflowstep import BackendKind, BackendRef, Phase, WorkflowStep
from converged_bridge.controller.intents import (
    FINALIZER,
    AddFinalizer,
    CreateObject,
    DeleteObject,
    Intent,
    RemoveFinalizer,
)
from converged_bridge.controller.status import is_finished, plan_status
from converged_bridge.errors import InvalidStep
from converged_bridge.kueue.builders import BuiltObject, KueueSite, build_operator_object
from converged_bridge.kueue.status import map_kueue_status

OPERATOR_KINDS = {"job": "Job", "jobset": "JobSet", "mpijob": "MPIJob", "minicluster": "MiniCluster"}
# operator kind -> (group, version, plural, BackendKind)
KINDS: dict[str, tuple[str, str, str, BackendKind]] = {
    "Job": ("batch", "v1", "jobs", BackendKind.JOB),
    "JobSet": ("jobset.x-k8s.io", "v1alpha2", "jobsets", BackendKind.JOBSET),
    "MPIJob": ("kubeflow.org", "v2beta1", "mpijobs", BackendKind.MPIJOB),
    "MiniCluster": ("flux-framework.org", "v1alpha2", "miniclusters", BackendKind.MINICLUSTER),
}


@dataclass(frozen=True)
class KueueView:
    """What the controller observed this cycle about the Kubernetes side of one step."""

    site: KueueSite
    obj: Mapping[str, Any] | None  # the operator object carrying the step's UID label
    workload: Mapping[str, Any] | None  # Kueue's Workload for it (or for the Job a MiniCluster made)
    pods: Sequence[Mapping[str, Any]]
    now: datetime
    served_kinds: frozenset[str] = frozenset(KINDS)  # operator kinds this API server serves
    status_written_at: datetime | None = None  # this controller's last status write for the step
    pending_reason_refresh: timedelta = timedelta(0)  # a new pending reason alone is written this rarely


def plan_kueue_step(step: WorkflowStep, view: KueueView) -> list[Intent]:
    meta = step.metadata
    ns = meta.namespace or "default"
    has_finalizer = FINALIZER in meta.finalizers
    if meta.deletion_timestamp is not None:
        intents: list[Intent] = []
        if view.obj is not None:
            group, version, plural, _ = KINDS[OPERATOR_KINDS[step.spec.operator.value]]
            intents.append(DeleteObject(group, version, plural, ns, view.obj["metadata"]["name"]))
        if has_finalizer:
            intents.append(RemoveFinalizer())
        return intents
    if is_finished(step):
        return []
    intents = [] if has_finalizer else [AddFinalizer()]

    if view.obj is None:
        try:
            built = build_operator_object(step, view.site)
        except InvalidStep as e:
            message = f"invalid for Kubernetes: {e}"
            return intents + plan_status(
                step, phase=Phase.FAILED, reason="InvalidSpec", message=message, now=view.now, warn=True
            )
        if built.kind not in view.served_kinds:
            operator = step.spec.operator.value
            message = f"operator {operator}: this cluster does not serve {built.api_version} {built.kind}"
            return intents + plan_status(
                step,
                phase=Phase.FAILED,
                reason="OperatorNotInstalled",
                message=message,
                now=view.now,
                warn=True,
            )
        group, version, plural, _ = KINDS[built.kind]
        return [*intents, CreateObject(group, version, plural, ns, built.body), *_created(step, view, built)]

    kind = OPERATOR_KINDS[step.spec.operator.value]  # items of a LIST carry no `kind`
    name = str(view.obj["metadata"]["name"])
    workload = (view.workload or {}).get("metadata", {}).get("name")
    ref = BackendRef.for_object(KINDS[kind][3], name, workload)
    out = map_kueue_status(kind, view.obj, view.workload, view.pods)
    return intents + plan_status(
        step,
        phase=out.phase,
        reason=out.reason,
        message=out.message,
        now=view.now,
        backend_ref=ref,
        exit_code=out.exit_code,
        start_time=out.start_time,
        completion_time=out.completion_time,
        log_tail=out.log_tail,
        status_written_at=view.status_written_at,
        pending_reason_refresh=view.pending_reason_refresh,
    )


def _created(step: WorkflowStep, view: KueueView, built: BuiltObject) -> list[Intent]:
    ref = BackendRef.for_object(KINDS[built.kind][3], built.name)
    message = f"created {ref.display}; waiting for Kueue"
    return plan_status(
        step, phase=Phase.QUEUED, reason="Created", message=message, now=view.now, backend_ref=ref
    )
