"""What every operator object of a step shares: name, labels, owner, container, pod (pure).

Every object is created suspended where the kind allows, carries `kueue.x-k8s.io/queue-name` (and the
priority class when set), is owned by its WorkflowStep (deleted with it), has a deadline from the
step's runtime, cpu/memory/GPU requests, exactly one completion with no retry (no accidental re-runs),
restartPolicy Never, and a name derived deterministically from the step.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.backends.kueue.operators.rule_images import build_rule_image_parts
from converged_bridge.backends.kueue.operators.security import secure_pod_spec
from converged_bridge.backends.kueue.operators.shared import (
    SharedVolume,
    build_shared_mounts,
    build_shared_volumes,
)
from converged_bridge.errors import InvalidStep
from converged_bridge.wire import (
    API_VERSION,
    GPU_MODEL_LABEL,
    GPU_RESOURCE,
    MANAGED_LABEL,
    MANAGED_VALUE,
    PRIORITY_LABEL,
    QUEUE_LABEL,
    RUN_LABEL,
    STEP_UID_LABEL,
    Kind,
)

NAME_MAX = 52  # Job names become pod label values (<= 63) with room for the indexed suffixes JobSet adds


@dataclass(frozen=True)
class RunAs:
    """Who a namespace's pods run as: its Slurm user's identity on the shared filesystem. `name` goes
    into USER and LOGNAME: an image has no passwd entry for a site's uid (Python's getpass, which
    snakemake calls, then fails without them)."""

    uid: int
    gid: int
    name: str | None = None


@dataclass(frozen=True)
class KueueSite:
    """How this site runs steps on Kubernetes (controller settings, not per step)."""

    default_local_queue: str = "default"
    # the shared filesystem: claims of the step's namespace, mounted at the same path in every pod
    shared_volumes: tuple[SharedVolume, ...] = ()
    image_pull_policy: str = "IfNotPresent"
    extra_labels: dict[str, str] = field(default_factory=dict)
    # who the step's pods run as: its namespace's identity on the shared filesystem, from the
    # namespace's converged.dev/run-as-* annotations (set per step by the Kueue unit)
    run_as: RunAs | None = None


@dataclass(frozen=True)
class BuiltObject:
    kind: Kind
    name: str
    body: dict[str, Any]


_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def build_object_name(step: WorkflowStep) -> str:
    """A DNS-1123 label <= 52 chars from the step name; a hash of the full name keeps long ones unique."""
    return build_object_name_from(step.metadata.name or "")


def build_object_name_from(name: str) -> str:
    """A DNS-1123 label <= 52 chars from an object's name; a hash of the full name keeps long ones unique."""
    if not name:
        raise InvalidStep("metadata.name", "an object needs a name")
    clean = _NOT_DNS.sub("-", name.lower()).strip("-") or "step"
    if clean == name and len(name) <= NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{clean[: NAME_MAX - 9].rstrip('-')}-{digest}"


def build_labels(step: WorkflowStep, site: KueueSite) -> dict[str, str]:
    spec = step.spec
    queue = (
        spec.kueue.local_queue if spec.kueue and spec.kueue.local_queue else None
    ) or site.default_local_queue
    labels = {
        **site.extra_labels,
        QUEUE_LABEL: queue,
        MANAGED_LABEL: MANAGED_VALUE,
        STEP_UID_LABEL: step.metadata.uid or "",
        RUN_LABEL: spec.workflow.run_id,
    }
    if spec.kueue and spec.kueue.priority_class:
        labels[PRIORITY_LABEL] = spec.kueue.priority_class
    return labels


def build_owner_reference(step: WorkflowStep) -> dict[str, Any]:
    if not step.metadata.uid:
        raise InvalidStep("metadata.uid", "a step needs a uid to own objects")
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowStep",
        "name": step.metadata.name,
        "uid": step.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def tasks_per_node(step: WorkflowStep) -> int:
    r = step.spec.resources
    return max(1, r.tasks // r.nodes)


def build_resources(step: WorkflowStep) -> dict[str, Any]:
    """Requests from the step's resources (what Kueue's quota and the scheduler count). Limits only for
    GPUs, which need them: like Slurm without memory enforcement and snakemake's Kubernetes executor,
    a step is not killed for the snakemake wrapper's own memory; a namespace LimitRange can cap it.

    A pod is one node of the step: it holds the CPUs of the step's tasks on a node (cpus per task
    times tasks per node), its memory and GPUs per node, like one node of a Slurm allocation."""
    r = step.spec.resources
    requests: dict[str, str] = {"cpu": str(r.cpus * tasks_per_node(step))}
    if r.mem_mib is not None:
        requests["memory"] = f"{r.mem_mib}Mi"
    resources: dict[str, Any] = {"requests": requests}
    if r.gpus:
        requests[GPU_RESOURCE] = str(r.gpus)
        resources["limits"] = {GPU_RESOURCE: str(r.gpus)}
    return resources


def build_container(step: WorkflowStep, site: KueueSite, name: str = "step") -> dict[str, Any]:
    spec = step.spec
    if not spec.image:
        raise InvalidStep("spec.image", "a step routed to Kubernetes needs a container image")
    env: list[dict[str, Any]] = []
    for e in spec.env:
        if e.value is not None:
            env.append({"name": e.name, "value": e.value})
        elif e.value_from is not None:
            ref = e.value_from.secret_key_ref
            env.append({"name": e.name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    container: dict[str, Any] = {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": site.image_pull_policy,
        "command": list(spec.command),  # argv, never through a shell
        "resources": build_resources(step),
        # the last lines of output become the termination message: exit reason without reading logs
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if env:
        container["env"] = env
    if spec.working_dir:
        container["workingDir"] = spec.working_dir
    if site.shared_volumes:
        container["volumeMounts"] = build_shared_mounts(site.shared_volumes)
    return container


def build_pod_spec(
    step: WorkflowStep,
    site: KueueSite,
    containers: list[dict[str, Any]],
    init_containers: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The pod of one node of the step, as `site.run_as` when the namespace has an identity; every
    container and initContainer passes Pod Security `restricted` (security.py).
    `init_containers` (sidecars among them) and `volumes` come on top of the shared filesystem's."""
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": containers}
    if init_containers:
        pod["initContainers"] = init_containers
    who = site.run_as
    if who is not None and who.name:
        for container in [*(init_containers or []), *containers]:
            env = container.setdefault("env", [])
            named = {e["name"] for e in env}
            env += [{"name": n, "value": who.name} for n in ("USER", "LOGNAME") if n not in named]
    if step.spec.resources.gpu_model:
        pod["nodeSelector"] = {GPU_MODEL_LABEL: step.spec.resources.gpu_model}
    if site.shared_volumes:
        pod["volumes"] = build_shared_volumes(site.shared_volumes)
    if volumes:
        pod["volumes"] = [*pod.get("volumes", []), *volumes]
    return secure_pod_spec(pod, *((who.uid, who.gid) if who else (None, None)))


def deadline_seconds(step: WorkflowStep) -> int | None:
    minutes = step.spec.resources.runtime_minutes
    return minutes * 60 if minutes else None


def build_metadata(step: WorkflowStep, site: KueueSite, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": step.metadata.namespace,
        "labels": build_labels(step, site),
        "ownerReferences": [build_owner_reference(step)],
    }


def build_step_pod_spec(step: WorkflowStep, site: KueueSite) -> dict[str, Any]:
    """The pod of a one-pod step: its command in its image, or, when the rule names its own images, the
    step's snakemake in `image` handing the rule's commands to one sidecar per rule image."""
    container = build_container(step, site)
    if not step.spec.rule_images:
        return build_pod_spec(step, site, [container])
    parts = build_rule_image_parts(step, container, site.image_pull_policy)
    return build_pod_spec(step, site, [parts.driver], parts.sidecars, parts.volumes)


def build_job_spec(step: WorkflowStep, site: KueueSite) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "suspend": True,
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": {STEP_UID_LABEL: step.metadata.uid or ""}},
            "spec": build_step_pod_spec(step, site),
        },
    }
    deadline = deadline_seconds(step)
    if deadline:
        spec["activeDeadlineSeconds"] = deadline
    return spec
