"""A StepAllocation on Kubernetes (pure): one suspended batch/v1 Job, admitted by Kueue once, whose pod
runs the allocation's agent in the step image; and the script of each step, which the agent runs as a
process of that pod (no image pull, no pod start, no Kueue admission per step).

The pod requests `slots` x one slot's CPUs, memory and GPUs, mounts the namespace's shared claims, runs
as the namespace's identity under Pod Security `restricted`, and has the allocation's runtime as its
deadline. The Job is owned by the StepAllocation (deleted with it) and carries the allocation's UID, so
a crash never makes two.
"""

from __future__ import annotations

import shlex
from typing import Any

from converged_bridge.allocation.agent import (
    AgentSpec,
    LocalLaunch,
    build_agent_script,
    build_step_header,
    build_step_name,
)
from converged_bridge.allocation.paths import AllocationPaths
from converged_bridge.allocation.warm import build_warm_command
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.backends.kueue.operators.common import BuiltObject, KueueSite, build_object_name_from
from converged_bridge.backends.kueue.operators.security import secure_pod_spec
from converged_bridge.backends.kueue.operators.shared import build_shared_mounts, build_shared_volumes
from converged_bridge.errors import InvalidStep
from converged_bridge.wire import (
    ALLOCATION_UID_LABEL,
    API_VERSION,
    GPU_MODEL_LABEL,
    GPU_RESOURCE,
    JOBS,
    MANAGED_LABEL,
    MANAGED_VALUE,
    PRIORITY_LABEL,
    QUEUE_LABEL,
    RUN_LABEL,
    STEP_UID_LABEL,
)


def build_allocation_job(alloc: StepAllocation, site: KueueSite, paths: AllocationPaths) -> BuiltObject:
    """The suspended Job whose one pod runs the allocation's agent (see the module docstring)."""
    spec = alloc.spec
    meta = alloc.metadata
    if not spec.image:
        raise InvalidStep("spec.image", "an allocation on Kubernetes needs the step image")
    uid = meta.uid or ""
    name = build_object_name_from(meta.name or "")
    queue = (
        spec.kueue.local_queue if spec.kueue and spec.kueue.local_queue else None
    ) or site.default_local_queue
    labels = {
        **site.extra_labels,
        QUEUE_LABEL: queue,
        MANAGED_LABEL: MANAGED_VALUE,
        STEP_UID_LABEL: uid,  # the Kueue unit indexes objects and pods by this: the converged object's uid
        ALLOCATION_UID_LABEL: uid,
        RUN_LABEL: spec.run_id,
    }
    if spec.kueue and spec.kueue.priority_class:
        labels[PRIORITY_LABEL] = spec.kueue.priority_class
    agent = build_agent_script(
        AgentSpec(
            allocation=f"{meta.namespace}/{meta.name}",
            paths=paths,
            slots=spec.slots,
            idle_seconds=spec.idle_seconds,
            launch=LocalLaunch(),
            warm=spec.warm,
        )
    )
    slot = spec.resources
    requests: dict[str, str] = {"cpu": str(slot.cpus * spec.slots)}
    if slot.mem_mib is not None:
        requests["memory"] = f"{slot.mem_mib * spec.slots}Mi"
    resources: dict[str, Any] = {"requests": requests}
    if slot.gpus:
        requests[GPU_RESOURCE] = str(slot.gpus * spec.slots)
        resources["limits"] = {GPU_RESOURCE: str(slot.gpus * spec.slots)}
    container: dict[str, Any] = {
        "name": "agent",
        "image": spec.image,
        "imagePullPolicy": site.image_pull_policy,
        "command": ["/bin/bash", "-c", agent],
        "workingDir": spec.working_dir,
        "resources": resources,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    who = site.run_as
    if who is not None and who.name:
        container["env"] = [{"name": n, "value": who.name} for n in ("USER", "LOGNAME")]
    if slot.gpu_model:
        pod["nodeSelector"] = {GPU_MODEL_LABEL: slot.gpu_model}
    if site.shared_volumes:
        container["volumeMounts"] = build_shared_mounts(site.shared_volumes)
        pod["volumes"] = build_shared_volumes(site.shared_volumes)
    secure_pod_spec(pod, *((who.uid, who.gid) if who else (None, None)))  # Pod Security `restricted`
    body = {
        "apiVersion": JOBS.api_version,
        "kind": JOBS.kind,
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "StepAllocation",
                    "name": meta.name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "suspend": True,
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 0,  # the agent never runs twice: a claimed step is never run again
            "activeDeadlineSeconds": spec.runtime_minutes * 60,
            "template": {
                "metadata": {"labels": {STEP_UID_LABEL: uid, ALLOCATION_UID_LABEL: uid}},
                "spec": pod,
            },
        },
    }
    return BuiltObject(JOBS, name, body)


def build_grouped_step_script(step: WorkflowStep) -> str:
    """What the agent runs for `step` in its pod: the step's working directory, environment and command
    (the pod is already the step image). Every user string is quoted."""
    spec = step.spec
    if any(e.value_from is not None for e in spec.env):
        raise InvalidStep("spec.env", "secret variables are not handed to an allocation")
    if not spec.command or spec.command[0].startswith("-"):
        raise InvalidStep("spec.command", "must start with the program to run")
    for text in (*spec.command, *(e.value or "" for e in spec.env), spec.working_dir or ""):
        if "\0" in text:
            raise InvalidStep("spec", "must not contain a NUL character")
    header = build_step_header(build_step_name(step), spec.resources.runtime_minutes)
    lines = ["#!/bin/bash", header, "set -euo pipefail"]
    if spec.working_dir:
        lines.append(f"cd -- {shlex.quote(spec.working_dir)}")
    lines += [f"export {e.name}={shlex.quote(e.value)}" for e in spec.env if e.value is not None]
    lines.append("exec " + shlex.join(spec.command))
    return "\n".join(lines) + "\n"


def build_warm_launcher(paths: AllocationPaths) -> str:
    """The spool's `warm` script: the allocation's warm snakemake, in the agent's own container."""
    return "#!/bin/bash\nexec " + shlex.join(build_warm_command(paths.state, paths.spool, paths.logs)) + "\n"
