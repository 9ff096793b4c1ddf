"""flux-framework.org MiniCluster (the Flux Operator): a Flux instance over `nodes` pods.

MiniCluster is not a Kueue integration: Kueue manages the indexed batch Job the Flux operator creates,
so the queue label goes to `spec.jobLabels` and that Job's Workload carries the admission.
"""

from __future__ import annotations

import shlex
from typing import Any

from converged_bridge.api.workflowstep import BackendKind, Operator, WorkflowStep
from converged_bridge.backends.kueue.operators.common import (
    BuiltObject,
    KueueSite,
    build_container,
    build_labels,
    build_metadata,
    build_object_name,
    deadline_seconds,
)
from converged_bridge.backends.kueue.operators.kind import OperatorKind
from converged_bridge.wire import GPU_MODEL_LABEL, JOBS, MINICLUSTERS


def build_minicluster(step: WorkflowStep, site: KueueSite) -> BuiltObject:
    """A Flux MiniCluster of `nodes` pods running the step's command once.

    MiniCluster is not a Kueue integration: Kueue manages the indexed batch Job the Flux operator creates,
    so the queue label goes to `spec.jobLabels` and that Job's Workload carries the admission.
    """
    name = build_object_name(step)
    r = step.spec.resources
    container = build_container(step, site)
    flux_container: dict[str, Any] = {
        "image": container["image"],
        "command": shlex.join(step.spec.command),  # Flux takes a command line; every word quoted
        "resources": container["resources"],
        "pullAlways": site.image_pull_policy == "Always",
    }
    if step.spec.working_dir:
        flux_container["workingDir"] = step.spec.working_dir
    plain = {e.name: e.value for e in step.spec.env if e.value is not None}
    secrets = {
        e.name: {"name": e.value_from.secret_key_ref.name, "key": e.value_from.secret_key_ref.key}
        for e in step.spec.env
        if e.value_from is not None
    }
    if plain:
        flux_container["environment"] = plain
    if secrets:
        flux_container["secrets"] = secrets
    if site.shared_paths:
        flux_container["volumes"] = {
            f"shared-{i}": {"path": p, "hostPath": p} for i, p in enumerate(site.shared_paths)
        }
    spec: dict[str, Any] = {
        "size": r.nodes,
        "tasks": r.tasks,
        "interactive": False,
        "jobLabels": build_labels(step, site),
        "containers": [flux_container],
    }
    if r.gpu_model:
        spec["pod"] = {"nodeSelector": {GPU_MODEL_LABEL: r.gpu_model}}
    deadline = deadline_seconds(step)
    if deadline:
        spec["deadlineSeconds"] = deadline
    body = {
        "apiVersion": MINICLUSTERS.api_version,
        "kind": MINICLUSTERS.kind,
        "metadata": build_metadata(step, site, name),
        "spec": spec,
    }
    return BuiltObject(MINICLUSTERS, name, body)


KIND = OperatorKind(
    Operator.MINICLUSTER, MINICLUSTERS, BackendKind.MINICLUSTER, build_minicluster, admitted=JOBS, mpi=True
)
