"""flux-framework.org MiniCluster (the Flux Operator): a Flux instance over `nodes` pods.

MiniCluster is not a Kueue integration: Kueue manages the indexed batch Job the Flux operator creates,
so the queue label goes to `spec.jobLabels` and that Job's Workload carries the admission.

Its pods are the Flux operator's to build: the MiniCluster asks for Pod Security `restricted` through
the fields it has (the pod's securityContext, the step container's and the flux-view initContainer's)
and mounts the namespace's shared claims. Whether Flux itself runs so is not checked (no Flux operator
on the local site).
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
from converged_bridge.backends.kueue.operators.security import (
    build_container_security_context,
    build_pod_security_context,
)
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
        "securityContext": build_container_security_context(),
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
    if site.shared_volumes:
        flux_container["volumes"] = {
            f"shared-{i}": {"path": v.path, "claimName": v.claim} for i, v in enumerate(site.shared_volumes)
        }
    spec: dict[str, Any] = {
        "size": r.nodes,
        "tasks": r.tasks,
        "interactive": False,
        "jobLabels": build_labels(step, site),
        "containers": [flux_container],
        "flux": {"container": {"securityContext": build_container_security_context()}},
    }
    who = site.run_as
    pod: dict[str, Any] = {
        "securityContext": build_pod_security_context(who.uid if who else None, who.gid if who else None)
    }
    if r.gpu_model:
        pod["nodeSelector"] = {GPU_MODEL_LABEL: r.gpu_model}
    spec["pod"] = pod
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
