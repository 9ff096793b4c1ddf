"""Operator objects for a WorkflowStep, queued by Kueue (pure: no client, no clock).

One builder per kind: batch/v1 Job, jobset.x-k8s.io/v1alpha2 JobSet, kubeflow.org/v2beta1 MPIJob and
flux-framework.org/v1alpha2 MiniCluster. Every object is created suspended where the kind allows,
carries `kueue.x-k8s.io/queue-name` (and the priority class when set), is owned by its WorkflowStep,
has a deadline from the step's runtime, cpu/memory/GPU requests, exactly one completion with no retry
(no accidental re-runs), restartPolicy Never, and a name derived deterministically from the step.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from converged_bridge.api.workflowstep import API_VERSION, Operator, WorkflowStep
from converged_bridge.errors import InvalidStep

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
STEP_UID_LABEL = "converged.dev/step-uid"
MANAGED_LABEL = "converged.dev/managed-by"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_MODEL_LABEL = "converged.dev/gpu-model"
NAME_MAX = 52  # Job names become pod label values (<= 63) with room for the indexed suffixes JobSet adds


@dataclass(frozen=True)
class KueueSite:
    """How this site runs steps on Kubernetes (controller settings, not per step)."""

    default_local_queue: str = "default"
    shared_paths: tuple[str, ...] = ()  # hostPath mounts at the same path in every pod (a shared filesystem)
    image_pull_policy: str = "IfNotPresent"
    extra_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltObject:
    api_version: str
    kind: str
    name: str
    body: dict[str, Any]

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def build_object_name(step: WorkflowStep) -> str:
    """A DNS-1123 label <= 52 chars from the step name; a hash of the full name keeps long ones unique."""
    name = step.metadata.name or ""
    if not name:
        raise InvalidStep("metadata.name", "a step needs a name")
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
        MANAGED_LABEL: "converged",
        STEP_UID_LABEL: step.metadata.uid or "",
        "converged.dev/run": spec.workflow.run_id,
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


def build_resources(step: WorkflowStep) -> dict[str, Any]:
    """Requests from the step's resources (what Kueue's quota and the scheduler count). Limits only for
    GPUs, which need them: like Slurm without memory enforcement and snakemake's Kubernetes executor,
    a step is not killed for the snakemake wrapper's own memory; a namespace LimitRange can cap it."""
    r = step.spec.resources
    requests: dict[str, str] = {"cpu": str(r.cpus)}
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
    if site.shared_paths:
        container["volumeMounts"] = [
            {"name": f"shared-{i}", "mountPath": p} for i, p in enumerate(site.shared_paths)
        ]
    return container


def build_pod_spec(step: WorkflowStep, site: KueueSite, containers: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": containers}
    if step.spec.resources.gpu_model:
        pod["nodeSelector"] = {GPU_MODEL_LABEL: step.spec.resources.gpu_model}
    if site.shared_paths:
        pod["volumes"] = [
            {"name": f"shared-{i}", "hostPath": {"path": p, "type": "Directory"}}
            for i, p in enumerate(site.shared_paths)
        ]
    return pod


def _deadline(step: WorkflowStep) -> int | None:
    minutes = step.spec.resources.runtime_minutes
    return minutes * 60 if minutes else None


def _metadata(step: WorkflowStep, site: KueueSite, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": step.metadata.namespace,
        "labels": build_labels(step, site),
        "ownerReferences": [build_owner_reference(step)],
    }


def _job_spec(step: WorkflowStep, site: KueueSite) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "suspend": True,
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": {STEP_UID_LABEL: step.metadata.uid or ""}},
            "spec": build_pod_spec(step, site, [build_container(step, site)]),
        },
    }
    deadline = _deadline(step)
    if deadline:
        spec["activeDeadlineSeconds"] = deadline
    return spec


def build_job(step: WorkflowStep, site: KueueSite) -> BuiltObject:
    """A suspended batch/v1 Job running the step's command once."""
    name = build_object_name(step)
    if step.spec.resources.nodes > 1:
        raise InvalidStep(
            "spec.resources.nodes", "a plain Job runs on one node; use operator mpijob or minicluster"
        )
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(step, site, name),
        "spec": _job_spec(step, site),
    }
    return BuiltObject("batch/v1", "Job", name, body)


def build_jobset(step: WorkflowStep, site: KueueSite) -> BuiltObject:
    """A suspended JobSet with one replicated Job (`main`) and no restarts."""
    name = build_object_name(step)
    job_spec = _job_spec(step, site)
    job_spec.pop("suspend")  # JobSet suspends its Jobs itself
    body = {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": _metadata(step, site, name),
        "spec": {
            "suspend": True,
            "failurePolicy": {"maxRestarts": 0},
            "replicatedJobs": [{"name": "main", "replicas": 1, "template": {"spec": job_spec}}],
        },
    }
    return BuiltObject("jobset.x-k8s.io/v1alpha2", "JobSet", name, body)


def build_mpijob(step: WorkflowStep, site: KueueSite) -> BuiltObject:
    """A suspended MPIJob: a launcher running the step's command with mpirun over `nodes` workers."""
    name = build_object_name(step)
    r = step.spec.resources
    slots = max(1, r.tasks // r.nodes)
    worker = build_container(step, site, name="worker")
    worker["command"] = ["/usr/sbin/sshd", "-De"]
    launcher = build_container(step, site, name="launcher")
    launcher["command"] = ["mpirun", "-n", str(r.tasks), *step.spec.command]
    launcher["resources"] = {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }
    run_policy: dict[str, Any] = {"suspend": True, "backoffLimit": 0, "cleanPodPolicy": "Running"}
    deadline = _deadline(step)
    if deadline:
        run_policy["activeDeadlineSeconds"] = deadline
    body = {
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": _metadata(step, site, name),
        "spec": {
            "slotsPerWorker": slots,
            "runPolicy": run_policy,
            "mpiReplicaSpecs": {
                "Launcher": {
                    "replicas": 1,
                    "restartPolicy": "Never",
                    "template": {"spec": build_pod_spec(step, site, [launcher])},
                },
                "Worker": {
                    "replicas": r.nodes,
                    "restartPolicy": "Never",
                    "template": {"spec": build_pod_spec(step, site, [worker])},
                },
            },
        },
    }
    return BuiltObject("kubeflow.org/v2beta1", "MPIJob", name, body)


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
    deadline = _deadline(step)
    if deadline:
        spec["deadlineSeconds"] = deadline
    body = {
        "apiVersion": "flux-framework.org/v1alpha2",
        "kind": "MiniCluster",
        "metadata": _metadata(step, site, name),
        "spec": spec,
    }
    return BuiltObject("flux-framework.org/v1alpha2", "MiniCluster", name, body)


BUILDERS = {
    Operator.JOB: build_job,
    Operator.JOBSET: build_jobset,
    Operator.MPIJOB: build_mpijob,
    Operator.MINICLUSTER: build_minicluster,
}


def build_operator_object(step: WorkflowStep, site: KueueSite) -> BuiltObject:
    """The object for the step's operator."""
    return BUILDERS[step.spec.operator](step, site)
