"""Sample objects validated by both the pydantic models and the CRD's openAPIV3Schema (jsonschema), so
the CRD itself is exercised; every CEL rule has a model twin that rejects the same sample with the same
message. (The schema-to-model drift checks are in test_crd_drift.py.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from converged_bridge.api.slurmcluster import SlurmCluster
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import BackendKind, BackendRef, WorkflowStep
from converged_bridge.wire import API_VERSION
from tests.unit.test_crd_drift import CASES, TIME, UID, Schema, crd_schema, load_crd, schema_nodes

# ---------------------------------------------------------------------------------------------------------
# Samples validated by both the models and the CRD schema.


def to_json_schema(node: Schema) -> Schema:
    """A CRD schema as plain JSON schema: x-kubernetes-* dropped, unknown fields rejected.

    The apiserver prunes unknown fields rather than rejecting them; rejecting them here makes a sample
    with a misspelt field fail, as `kubectl apply --validate=strict` does.
    """
    converted: Schema = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if "properties" in converted:
        converted["properties"] = {k: to_json_schema(v) for k, v in converted["properties"].items()}
        converted.setdefault("additionalProperties", False)
    if isinstance(converted.get("additionalProperties"), dict):
        converted["additionalProperties"] = to_json_schema(converted["additionalProperties"])
    if "items" in converted:
        converted["items"] = to_json_schema(converted["items"])
    return converted


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time")
def is_rfc3339(value: object) -> bool:
    """The apiserver's date-time format (RFC 3339); jsonschema checks it only with an optional extra."""
    return not isinstance(value, str) or _RFC3339.fullmatch(value) is not None


def crd_validator(plural: str) -> jsonschema.Draft7Validator:
    schema = to_json_schema(crd_schema(load_crd(plural)))
    schema["properties"]["metadata"]["additionalProperties"] = True
    return jsonschema.Draft7Validator(schema, format_checker=FORMATS)


def condition(type_: str) -> Schema:
    return {
        "type": type_,
        "status": "True",
        "observedGeneration": 1,
        "lastTransitionTime": TIME,
        "reason": "Submitted",
        "message": "ok",
    }


def full_step() -> Schema:
    """A WorkflowStep with every field of the schema set."""
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowStep",
        "metadata": {"name": "bwa-map-3", "namespace": "default", "uid": UID},
        "spec": {
            "workflow": {"runId": "run-1", "rule": "bwa_map", "jobId": 3, "wildcards": {"sample": "A"}},
            "backend": "slurm",
            "route": {"decision": "RulePinned", "reason": "rule pinned to slurm"},
            "operator": "job",
            "image": "docker://python:3.12",
            "ruleImages": [
                {"url": "docker://registry.site/alice/bwa:0.7", "path": "/wf/.snakemake/singularity/0a.simg"}
            ],
            "command": ["python3", "-c", "print(1)"],
            "workingDir": "/work",
            "env": [
                {"name": "MODE", "value": "fast"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            ],
            "resources": {
                "cpus": 4,
                "memMiB": 8192,
                "gpus": 2,
                "gpuModel": "a100",
                "nodes": 2,
                "tasks": 4,
                "runtimeMinutes": 30,
            },
            "slurm": {"cluster": "hpc", "partition": "gpu", "account": "lab", "qos": "normal"},
            "kueue": {"localQueue": "default", "priorityClass": "high"},
            "ttlSecondsAfterFinished": 86400,
        },
        "status": {
            "phase": "Running",
            "observedGeneration": 1,
            "conditions": [condition("Submitted")],
            "backendRef": {
                "kind": "SlurmJob",
                "cluster": "hpc",
                "jobId": 42,
                "name": "unused",
                "workload": "unused",
                "allocation": "sm-1-g1",
                "display": "hpc/42",
            },
            "exitCode": 0,
            "reason": "None",
            "message": "running on g1",
            "startTime": TIME,
            "completionTime": TIME,
            "logPath": f"/var/log/converged/converged-{UID}.log",
            "logTail": "hello\n",
        },
    }


def full_cluster() -> Schema:
    """A SlurmCluster with every field of the schema set."""
    secret = {"namespace": "converged", "name": "slurm-jwt", "key": "token"}
    capacity = {"nodes": 2, "cpus": 16, "memoryMiB": 65536, "gpus": {"a100": 2}}
    return {
        "apiVersion": API_VERSION,
        "kind": "SlurmCluster",
        "metadata": {"name": "hpc"},
        "spec": {
            "transport": "restd",
            "restd": {
                "url": "http://127.0.0.1:6820",
                "tokenSecretRef": secret,
                "user": "slurm",
                "openapiVersion": "v0.0.38",
            },
            "cli": {"binDir": "/usr/bin", "slurmConf": "/etc/slurm/slurm.conf"},
            "userMapping": [{"namespace": "lab-a", "user": "alice", "tokenSecretRef": secret}],
            "containerRuntime": "apptainer",
            "mpi": False,
            "bindPaths": ["/scratch"],
            "defaults": {"partition": "cpu", "account": "lab", "qos": "normal"},
            "partitions": ["cpu", "gpu"],
            "queue": {"clusterQueue": "slurm-hpc", "cohort": "hpc", "quotaPolicy": "idle"},
        },
        "status": {
            "observedGeneration": 1,
            "conditions": [condition("Reachable"), condition("Synced")],
            "lastSyncTime": TIME,
            "slurmVersion": "22.05.8",
            "openapiVersion": "v0.0.38",
            "partitions": [
                {
                    "name": "gpu",
                    "state": "UP",
                    "total": capacity,
                    "idle": capacity,
                    "runningJobs": 1,
                    "pendingJobs": 0,
                    "maxTimeMinutes": 60,
                }
            ],
        },
    }


def full_allocation() -> Schema:
    """A StepAllocation with every field of the schema set."""
    return {
        "apiVersion": API_VERSION,
        "kind": "StepAllocation",
        "metadata": {"name": "sm-1-g1", "namespace": "default", "uid": UID},
        "spec": {
            "runId": "sm-1",
            "group": "g1",
            "backend": "slurm",
            "image": "/images/step.sif",
            "workingDir": "/shared/run",
            "resources": {"cpus": 2, "memMiB": 954, "gpus": 1, "gpuModel": "a100"},
            "slots": 2,
            "runtimeMinutes": 30,
            "idleSeconds": 120,
            "warm": True,
            "closed": True,
            "expectedSteps": 4,
            "slurm": {"cluster": "hpc", "partition": "gpu", "account": "lab", "qos": "normal"},
            "kueue": {"localQueue": "default", "priorityClass": "high"},
        },
        "status": {
            "phase": "Running",
            "observedGeneration": 2,
            "conditions": [condition("Submitted")],
            "backendRef": {
                "kind": "SlurmJob",
                "cluster": "hpc",
                "jobId": 42,
                "name": "unused",
                "workload": "unused",
                "allocation": "unused",
                "display": "hpc/42",
            },
            "reason": "None",
            "message": "running on g1",
            "target": "hpc/gpu",
            "startTime": TIME,
            "completionTime": TIME,
            "logPath": f"/shared/run/.converged/logs/converged-{UID}.log",
            "steps": {"total": 4, "running": 2, "finished": 1, "failed": 0},
        },
    }


FULL: dict[str, Callable[[], Schema]] = {
    "WorkflowStep": full_step,
    "SlurmCluster": full_cluster,
    "StepAllocation": full_allocation,
}


def object_paths(value: object, path: str = "") -> set[str]:
    if isinstance(value, dict):
        paths = {path}
        for key, child in value.items():
            paths |= object_paths(child, f"{path}.{key}")
        return paths
    if isinstance(value, list):
        paths = {path}
        for child in value:
            paths |= object_paths(child, f"{path}[]")
        return paths
    return {path}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_full_sample_covers_every_field(kind: str) -> None:
    schema_paths = {path for path, _ in schema_nodes(crd_schema(load_crd(CASES[kind][0])))}
    sample_paths = object_paths(FULL[kind]())
    map_paths = {p for p in schema_paths if p.endswith("{}")}
    uncovered = sorted(p for p in schema_paths - sample_paths - map_paths if not p.startswith(".metadata"))
    assert uncovered == []


@pytest.mark.parametrize("kind", sorted(CASES))
def test_full_sample_valid_in_both_and_round_trips(kind: str) -> None:
    plural, model = CASES[kind]
    sample = FULL[kind]()
    crd_validator(plural).validate(sample)
    parsed = model.model_validate(sample)
    manifest = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    crd_validator(plural).validate(manifest)
    assert manifest["spec"] == sample["spec"]
    assert manifest["status"] == sample["status"]


def test_minimal_step_gets_the_crd_defaults() -> None:
    minimal = {
        "spec": {
            "workflow": {"runId": "r", "rule": "all", "jobId": 0},
            "backend": "kueue",
            "command": ["true"],
        }
    }
    crd_validator("workflowsteps").validate(minimal)
    manifest = WorkflowStep.model_validate(minimal).to_manifest()
    crd_validator("workflowsteps").validate(manifest)
    resources = crd_schema(load_crd("workflowsteps"))["properties"]["spec"]["properties"]["resources"]
    crd_defaults = {
        name: node["default"] for name, node in resources["properties"].items() if "default" in node
    }
    assert manifest["spec"]["resources"] == crd_defaults
    assert manifest["spec"]["operator"] == "job"


def _set(path: str, value: object) -> Callable[[Schema], None]:
    def mutate(sample: Schema) -> None:
        *parents, last = path.split(".")
        node: Any = sample
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


INVALID_STEPS: dict[str, Callable[[Schema], None]] = {
    "unknown backend": _set("spec.backend", "lsf"),
    "zero cpus": _set("spec.resources.cpus", 0),
    "negative gpus": _set("spec.resources.gpus", -1),
    "empty command": _set("spec.command", []),
    "env name not a C identifier": _set("spec.env.0.name", "1BAD-NAME"),
    "partition with a space": _set("spec.slurm.partition", "gpu long"),
    "partition with a semicolon": _set("spec.slurm.partition", "gpu;rm"),
    "gpu model with a colon": _set("spec.resources.gpuModel", "a100:2"),
    "relative working dir": _set("spec.workingDir", "work"),
    "unknown spec field": _set("spec.nodeSelector", {"a": "b"}),
    "unknown phase": _set("status.phase", "Evicted"),
    "exit code above 255": _set("status.exitCode", 256),
    "log tail above 4 KiB": _set("status.logTail", "x" * 4097),
    "condition status not an enum": _set("status.conditions.0.status", "yes"),
    "condition time not a date": _set("status.conditions.0.lastTransitionTime", "yesterday"),
    "run id not a label value": _set("spec.workflow.runId", "-run"),
    "secret ref without key": _set("spec.env.1.valueFrom.secretKeyRef", {"name": "creds"}),
    "unknown backend kind": _set("status.backendRef.kind", "Pod"),
}


@pytest.mark.parametrize("case", sorted(INVALID_STEPS))
def test_invalid_step_rejected_by_model_and_crd(case: str) -> None:
    sample = full_step()
    INVALID_STEPS[case](sample)
    assert list(crd_validator("workflowsteps").iter_errors(sample)) != []
    with pytest.raises(ValidationError):
        WorkflowStep.model_validate(sample)


INVALID_CLUSTERS: dict[str, Callable[[Schema], None]] = {
    "url without scheme": _set("spec.restd.url", "127.0.0.1:6820"),
    "unknown runtime": _set("spec.containerRuntime", "docker"),
    "unknown transport": _set("spec.transport", "ssh"),
    "bind path with a colon": _set("spec.bindPaths", ["/a:/b"]),
    "unknown quota policy": _set("spec.queue.quotaPolicy", "half"),
    "negative idle cpus": _set("status.partitions.0.idle.cpus", -1),
    "unknown partition state": _set("status.partitions.0.state", "MIXED"),
    "token ref without namespace": _set("spec.restd.tokenSecretRef", {"name": "a", "key": "b"}),
}


INVALID_ALLOCATIONS: dict[str, Callable[[Schema], None]] = {
    "unknown backend": _set("spec.backend", "lsf"),
    "zero slots": _set("spec.slots", 0),
    "relative working dir": _set("spec.workingDir", "run"),
    "step resources with nodes": _set("spec.resources.nodes", 2),
    "unknown phase": _set("status.phase", "Ended"),
    "negative step count": _set("status.steps.total", -1),
    "idle for more than a day": _set("spec.idleSeconds", 86401),
}


@pytest.mark.parametrize("case", sorted(INVALID_ALLOCATIONS))
def test_invalid_allocation_rejected_by_model_and_crd(case: str) -> None:
    sample = full_allocation()
    INVALID_ALLOCATIONS[case](sample)
    assert list(crd_validator("stepallocations").iter_errors(sample)) != []
    with pytest.raises(ValidationError):
        StepAllocation.model_validate(sample)


@pytest.mark.parametrize("case", sorted(INVALID_CLUSTERS))
def test_invalid_cluster_rejected_by_model_and_crd(case: str) -> None:
    sample = full_cluster()
    INVALID_CLUSTERS[case](sample)
    assert list(crd_validator("slurmclusters").iter_errors(sample)) != []
    with pytest.raises(ValidationError):
        SlurmCluster.model_validate(sample)


# ---------------------------------------------------------------------------------------------------------
# CEL rules: each has a model twin that rejects a violating sample with the rule's own message.

TRANSITION_ONLY = None  # a rule on oldSelf: only the apiserver can check it
ALLOCATION_IMMUTABLE = (
    "self.backend == oldSelf.backend && self.runId == oldSelf.runId && self.slots == oldSelf.slots "
    "&& self.resources == oldSelf.resources && self.workingDir == oldSelf.workingDir "
    "&& self.warm == oldSelf.warm"
)
CEL_TWINS: dict[tuple[str, str, str], Callable[[Schema], None] | None] = {
    ("WorkflowStep", ".spec", "self == oldSelf"): TRANSITION_ONLY,
    (
        "WorkflowStep",
        ".spec",
        "self.backend != 'slurm' || (has(self.slurm) && has(self.slurm.cluster))",
    ): _set("spec.slurm", {"partition": "gpu"}),
    ("WorkflowStep", ".spec.env[]", "has(self.value) != has(self.valueFrom)"): _set(
        "spec.env.0", {"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    ),
    ("WorkflowStep", ".spec.resources", "!has(self.gpuModel) || self.gpus > 0"): _set(
        "spec.resources.gpus", 0
    ),
    ("WorkflowStep", ".spec.resources", "self.tasks >= self.nodes"): _set("spec.resources.tasks", 1),
    (
        "WorkflowStep",
        ".status.backendRef",
        "self.kind == 'SlurmJob' ? has(self.cluster) && has(self.jobId) : has(self.name)",
    ): _set("status.backendRef", {"kind": "SlurmJob", "cluster": "hpc", "display": "hpc/?"}),
    ("SlurmCluster", ".spec", "self.transport != 'restd' || has(self.restd)"): _set("spec.restd", None),
    (
        "StepAllocation",
        ".spec",
        "self.backend != 'slurm' || (has(self.slurm) && has(self.slurm.cluster))",
    ): _set("spec.slurm", {"partition": "gpu"}),
    ("StepAllocation", ".spec", ALLOCATION_IMMUTABLE): TRANSITION_ONLY,
    ("StepAllocation", ".spec", "!oldSelf.closed || self.closed"): TRANSITION_ONLY,
    ("StepAllocation", ".spec.resources", "!has(self.gpuModel) || self.gpus > 0"): _set(
        "spec.resources.gpus", 0
    ),
    (
        "StepAllocation",
        ".status.backendRef",
        "self.kind == 'SlurmJob' ? has(self.cluster) && has(self.jobId) : has(self.name)",
    ): _set("status.backendRef", {"kind": "Job", "display": "Job/?"}),
}


def cel_rules() -> dict[tuple[str, str, str], str]:
    rules = {}
    for kind, (plural, _) in CASES.items():
        for path, node in schema_nodes(crd_schema(load_crd(plural))):
            for rule in node.get("x-kubernetes-validations", []):
                rules[(kind, path, rule["rule"])] = rule["message"]
    return rules


def test_every_cel_rule_has_a_model_twin() -> None:
    assert sorted(cel_rules()) == sorted(CEL_TWINS)


@pytest.mark.parametrize("key", [k for k, v in CEL_TWINS.items() if v is not None], ids=lambda k: k[2])
def test_model_twin_rejects_with_the_rule_message(key: tuple[str, str, str]) -> None:
    kind = key[0]
    sample = FULL[kind]()
    mutate = CEL_TWINS[key]
    assert mutate is not None
    CASES[kind][1].model_validate(sample)
    mutate(sample)
    sample = _without_nones(sample)
    with pytest.raises(ValidationError, match=re.escape(cel_rules()[key])):
        CASES[kind][1].model_validate(sample)


def _without_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nones(v) for v in value]
    return value


def test_backend_ref_display_fills_the_job_column() -> None:
    slurm = BackendRef.for_slurm_job("hpc", 42)
    job = BackendRef.for_object(BackendKind.JOBSET, "bwa-map-3", workload="jobset-bwa-map-3-1a2b3")
    assert (slurm.display, job.display) == ("hpc/42", "JobSet/bwa-map-3")
    validator = crd_validator("workflowsteps")
    for ref in (slurm, job):
        sample = full_step()
        sample["status"]["backendRef"] = ref.model_dump(mode="json", by_alias=True, exclude_none=True)
        validator.validate(sample)
