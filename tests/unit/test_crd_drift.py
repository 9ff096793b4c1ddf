"""The CRD YAML in crds/ is the source of truth; the pydantic models must say exactly the same.

Checked both ways and recursively: field names, types, required fields, enums, bounds, patterns,
scalar defaults; printer columns point at existing fields; every CEL rule has a model twin that rejects
the same sample with the same message. Sample objects are validated by both the models and the CRD's
openAPIV3Schema (jsonschema), so the CRD itself is exercised. The drift checker is itself tested
against mutated CRDs, so it cannot silently pass.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, ValidationError

from converged_bridge.api.slurmcluster import SlurmCluster
from converged_bridge.api.workflowstep import API_VERSION, BackendKind, BackendRef, WorkflowStep

CRDS = Path(__file__).resolve().parents[2] / "crds"
Schema = dict[str, Any]

# Keywords compared between CRD and model wherever either side has them.
COMPARED_KEYWORDS = (
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
)
UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
TIME = "2026-11-22T05:51:00Z"


def load_crd(plural: str) -> Schema:
    crd: Schema = yaml.safe_load((CRDS / f"converged.dev_{plural}.yaml").read_text())
    return crd


def served_version(crd: Schema) -> Schema:
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    return dict(version)


def crd_schema(crd: Schema) -> Schema:
    return dict(served_version(crd)["schema"]["openAPIV3Schema"])


CASES: dict[str, tuple[str, type[BaseModel]]] = {
    "WorkflowStep": ("workflowsteps", WorkflowStep),
    "SlurmCluster": ("slurmclusters", SlurmCluster),
}


# ---------------------------------------------------------------------------------------------------------
# The comparison of a CRD schema with a pydantic JSON schema.


def resolve(node: Schema, defs: Schema) -> Schema:
    """`node` with $ref followed and Optional (anyOf [X, null]) unwrapped; outer keys win."""
    outer = {k: v for k, v in node.items() if k not in ("$ref", "anyOf")}
    if "$ref" in node:
        inner = resolve(defs[node["$ref"].rsplit("/", 1)[1]], defs)
        return {**inner, **outer}
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b != {"type": "null"}]
        assert len(branches) == 1, f"unexpected union {node['anyOf']}"
        return {**resolve(branches[0], defs), **outer}
    return node


def is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool)


def compare_schemas(crd: Schema, model: Schema, defs: Schema, path: str = "") -> list[str]:
    """Every difference between a CRD schema node and a model JSON schema node, as readable lines."""
    model = resolve(model, defs)
    problems: list[str] = []
    where = path or "<root>"
    if crd.get("type") != model.get("type"):
        problems.append(f"{where}: type {crd.get('type')!r} in CRD, {model.get('type')!r} in model")
        return problems
    if path.endswith(".metadata") or path in ("metadata",):
        return problems  # ObjectMeta is the apiserver's, not ours
    for keyword in COMPARED_KEYWORDS:
        if crd.get(keyword) != model.get(keyword):
            problems.append(
                f"{where}: {keyword} {crd.get(keyword)!r} in CRD, {model.get(keyword)!r} in model"
            )
    if crd.get("type") == "string" and crd.get("format") != model.get("format"):
        problems.append(f"{where}: format {crd.get('format')!r} in CRD, {model.get('format')!r} in model")
    if set(crd.get("enum", [])) != set(model.get("enum", [])):
        problems.append(f"{where}: enum {crd.get('enum')} in CRD, {model.get('enum')} in model")
    problems += compare_defaults(crd, model, where)
    if crd.get("type") == "object":
        problems += compare_objects(crd, model, defs, path)
    if crd.get("type") == "array":
        problems += compare_schemas(crd["items"], model["items"], defs, f"{path}[]")
    return problems


def compare_defaults(crd: Schema, model: Schema, where: str) -> list[str]:
    crd_default = crd.get("default")
    model_default = model.get("default")
    if model.get("const") is not None:
        return []  # apiVersion/kind: the model's constant, not a CRD default
    scalar_default = crd_default is None or is_scalar(crd_default)
    if scalar_default and crd_default != model_default:
        return [f"{where}: default {crd_default!r} in CRD, {model_default!r} in model"]
    return []


def compare_objects(crd: Schema, model: Schema, defs: Schema, path: str) -> list[str]:
    where = path or "<root>"
    problems: list[str] = []
    crd_props: Schema = crd.get("properties", {})
    model_props: Schema = model.get("properties", {})
    for name in sorted(crd_props.keys() - model_props.keys()):
        problems.append(f"{path}.{name}: in CRD, not in model")
    for name in sorted(model_props.keys() - crd_props.keys()):
        problems.append(f"{path}.{name}: in model, not in CRD")
    if set(crd.get("required", [])) != set(model.get("required", [])):
        problems.append(
            f"{where}: required {sorted(crd.get('required', []))} in CRD, "
            f"{sorted(model.get('required', []))} in model"
        )
    for name in sorted(crd_props.keys() & model_props.keys()):
        child = f"{path}.{name}" if path else name
        problems += compare_schemas(crd_props[name], model_props[name], defs, child)
        if isinstance(crd_props[name].get("default"), dict) and name in model.get("required", []):
            problems.append(f"{child}: defaulted in CRD, required in model")
    crd_values = crd.get("additionalProperties")
    model_values = model.get("additionalProperties")
    if isinstance(crd_values, dict) or isinstance(model_values, dict):
        if not (isinstance(crd_values, dict) and isinstance(model_values, dict)):
            problems.append(f"{where}: a map in only one of CRD and model")
        else:
            problems += compare_schemas(crd_values, model_values, defs, f"{path}{{}}")
    return problems


def drift(kind: str, schema: Schema | None = None) -> list[str]:
    plural, model = CASES[kind]
    model_schema = model.model_json_schema(by_alias=True, mode="validation")
    crd = schema if schema is not None else crd_schema(load_crd(plural))
    return compare_schemas(crd, model_schema, model_schema.get("$defs", {}))


@pytest.mark.parametrize("kind", sorted(CASES))
def test_models_match_crd(kind: str) -> None:
    assert drift(kind) == []


def _drop_field(schema: Schema) -> None:
    del schema["properties"]["spec"]["properties"]["command"]


def _change_enum(schema: Schema) -> None:
    schema["properties"]["status"]["properties"]["phase"]["enum"].append("Evicted")


def _change_bound(schema: Schema) -> None:
    schema["properties"]["spec"]["properties"]["resources"]["properties"]["cpus"]["minimum"] = 0


def _change_required(schema: Schema) -> None:
    schema["properties"]["spec"]["properties"]["workflow"]["required"].remove("jobId")


def _add_field(schema: Schema) -> None:
    schema["properties"]["status"]["properties"]["backendRef"]["properties"]["node"] = {"type": "string"}


def _change_default(schema: Schema) -> None:
    schema["properties"]["spec"]["properties"]["operator"]["default"] = "jobset"


def _change_pattern(schema: Schema) -> None:
    partition = schema["properties"]["spec"]["properties"]["slurm"]["properties"]["partition"]
    partition["pattern"] = "^.+$"


def _change_map_values(schema: Schema) -> None:
    wildcards = schema["properties"]["spec"]["properties"]["workflow"]["properties"]["wildcards"]
    wildcards["additionalProperties"]["maxLength"] = 10


def _change_nested_type(schema: Schema) -> None:
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    conditions["items"]["properties"]["observedGeneration"]["type"] = "string"


@pytest.mark.parametrize(
    "mutate",
    [
        _drop_field,
        _change_enum,
        _change_bound,
        _change_required,
        _add_field,
        _change_default,
        _change_pattern,
        _change_map_values,
        _change_nested_type,
    ],
)
def test_drift_is_detected(mutate: Callable[[Schema], None]) -> None:
    schema = copy.deepcopy(crd_schema(load_crd("workflowsteps")))
    mutate(schema)
    assert drift("WorkflowStep", schema) != []


# ---------------------------------------------------------------------------------------------------------
# The CRD on its own: structural, printer columns, metadata.


def schema_nodes(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}{{}}")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")


@pytest.mark.parametrize("kind", sorted(CASES))
def test_crd_is_structural(kind: str) -> None:
    untyped = [
        path for path, node in schema_nodes(crd_schema(load_crd(CASES[kind][0]))) if "type" not in node
    ]
    assert untyped == []


def test_crd_names() -> None:
    steps = load_crd("workflowsteps")
    assert steps["metadata"]["name"] == "workflowsteps.converged.dev"
    assert steps["spec"]["scope"] == "Namespaced"
    assert steps["spec"]["names"]["shortNames"] == ["wfs"]
    assert steps["spec"]["names"]["categories"] == ["converged"]
    clusters = load_crd("slurmclusters")
    assert clusters["metadata"]["name"] == "slurmclusters.converged.dev"
    assert clusters["spec"]["scope"] == "Cluster"
    assert clusters["spec"]["names"]["shortNames"] == ["slc"]
    for crd in (steps, clusters):
        version = served_version(crd)
        assert (crd["spec"]["group"], version["served"], version["storage"]) == ("converged.dev", True, True)
        assert version["subresources"] == {"status": {}}
        assert f"{crd['spec']['group']}/{version['name']}" == API_VERSION


_PATH_TOKEN = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[\?\(@\.([A-Za-z_][A-Za-z0-9_]*)==\"([^\"]*)\"\)\]")
_COLUMN_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}


def resolve_json_path(schema: Schema, json_path: str) -> Schema:
    """The schema node a printer column's JSONPath selects (fields and ==-filters on lists)."""
    node, position = schema, 0
    while position < len(json_path):
        match = _PATH_TOKEN.match(json_path, position)
        assert match, f"unsupported JSONPath {json_path!r} at {position}"
        field, filter_field, _ = match.groups()
        if field is not None:
            assert field in node.get("properties", {}), f"{json_path}: no field {field!r}"
            node = node["properties"][field]
        else:
            assert node.get("type") == "array", f"{json_path}: filter on a non-list"
            node = node["items"]
            assert filter_field in node.get("properties", {}), f"{json_path}: no field {filter_field!r}"
        position = match.end()
    return node


@pytest.mark.parametrize("kind", sorted(CASES))
def test_printer_columns_point_at_fields(kind: str) -> None:
    crd = load_crd(CASES[kind][0])
    schema = crd_schema(crd)
    for column in served_version(crd)["additionalPrinterColumns"]:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            assert column["type"] == "date"
            continue
        node = resolve_json_path(schema, column["jsonPath"])
        if column["type"] == "date":
            assert (node.get("type"), node.get("format")) == ("string", "date-time"), column
        else:
            assert node.get("type") == _COLUMN_TYPES[column["type"]], column


def test_workflowstep_printer_columns() -> None:
    columns = served_version(load_crd("workflowsteps"))["additionalPrinterColumns"]
    default_columns = [c["name"] for c in columns if c.get("priority", 0) == 0]
    assert default_columns == ["Rule", "Backend", "Phase", "Job", "Reason", "Age"]


def test_backend_ref_display_fills_the_job_column() -> None:
    slurm = BackendRef.for_slurm_job("hpc", 42)
    job = BackendRef.for_object(BackendKind.JOBSET, "bwa-map-3", workload="jobset-bwa-map-3-1a2b3")
    assert (slurm.display, job.display) == ("hpc/42", "JobSet/bwa-map-3")
    validator = crd_validator("workflowsteps")
    for ref in (slurm, job):
        sample = full_step()
        sample["status"]["backendRef"] = ref.model_dump(mode="json", by_alias=True, exclude_none=True)
        validator.validate(sample)


def test_resolve_json_path_rejects_missing_fields() -> None:
    schema = crd_schema(load_crd("workflowsteps"))
    with pytest.raises(AssertionError, match="no field 'nope'"):
        resolve_json_path(schema, ".status.backendRef.nope")


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


FULL: dict[str, Callable[[], Schema]] = {"WorkflowStep": full_step, "SlurmCluster": full_cluster}


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
