"""WorkflowStep (converged.dev/v1alpha1): one workflow step, run once on Slurm or through Kueue.

Mirrors crds/converged.dev_workflowsteps.yaml; tests/unit/test_crd_drift.py keeps the two in step.
Validators named after a CEL rule of the CRD raise that rule's message.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from converged_bridge.api.base import SpecModel, StatusModel, dump_manifest
from converged_bridge.api.conditions import CONDITION_REASON_PATTERN, Condition
from converged_bridge.api.meta import DNS_SUBDOMAIN_PATTERN, SECRET_KEY_PATTERN, ObjectMeta
from converged_bridge.wire import API_VERSION

LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
GPU_MODEL_PATTERN = r"^[a-zA-Z0-9_.-]+$"
# Slurm partition, account and QOS names as converged accepts them: they end up in #SBATCH
# directives, which cannot be quoted, so no whitespace and no shell metacharacters.
SLURM_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"

DnsSubdomain = Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
SlurmName = Annotated[str, Field(max_length=128, pattern=SLURM_NAME_PATTERN)]


class Backend(StrEnum):
    SLURM = "slurm"
    KUEUE = "kueue"


class Operator(StrEnum):
    JOB = "job"
    JOBSET = "jobset"
    MPIJOB = "mpijob"
    MINICLUSTER = "minicluster"


class Phase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class BackendKind(StrEnum):
    SLURM_JOB = "SlurmJob"
    JOB = "Job"
    JOBSET = "JobSet"
    MPIJOB = "MPIJob"
    MINICLUSTER = "MiniCluster"


class WorkflowJob(SpecModel):
    """The workflow job a step runs."""

    run_id: Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
    rule: Annotated[str, Field(min_length=1, max_length=256)]
    job_id: Annotated[int, Field(ge=0)]
    wildcards: Annotated[dict[str, Annotated[str, Field(max_length=1024)]], Field(max_length=64)] = Field(
        default_factory=dict
    )


class Route(SpecModel):
    """Why the step runs on its backend, as the router decided."""

    decision: Annotated[str, Field(max_length=64, pattern=CONDITION_REASON_PATTERN)]
    reason: Annotated[str, Field(max_length=1024)] | None = None


class SecretKeyRef(SpecModel):
    """A key of a Secret in the step's namespace."""

    name: DnsSubdomain
    key: Annotated[str, Field(max_length=253, pattern=SECRET_KEY_PATTERN)]


class EnvVarSource(SpecModel):
    secret_key_ref: SecretKeyRef


class EnvVar(SpecModel):
    """One environment variable: a literal value, or a reference to a Secret key."""

    name: Annotated[str, Field(max_length=256, pattern=ENV_NAME_PATTERN)]
    value: Annotated[str, Field(max_length=32768)] | None = None
    value_from: EnvVarSource | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("set exactly one of value or valueFrom")
        return self


class Resources(SpecModel):
    """What the step needs. mem_mib and gpus are per node, cpus per task."""

    cpus: Annotated[int, Field(ge=1)] = 1
    mem_mib: Annotated[int, Field(ge=1)] | None = Field(default=None, alias="memMiB")
    gpus: Annotated[int, Field(ge=0)] = 0
    gpu_model: Annotated[str, Field(max_length=63, pattern=GPU_MODEL_PATTERN)] | None = None
    nodes: Annotated[int, Field(ge=1)] = 1
    tasks: Annotated[int, Field(ge=1)] = 1
    runtime_minutes: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.gpu_model is not None and self.gpus <= 0:
            raise ValueError("gpuModel needs gpus > 0")
        if self.tasks < self.nodes:
            raise ValueError("tasks must be at least nodes")
        return self


class SlurmPlacement(SpecModel):
    """Where on Slurm; partition, account and qos fall back to the SlurmCluster's defaults."""

    cluster: DnsSubdomain | None = None
    partition: SlurmName | None = None
    account: SlurmName | None = None
    qos: SlurmName | None = None


class KueuePlacement(SpecModel):
    local_queue: DnsSubdomain | None = None
    priority_class: DnsSubdomain | None = None


class RuleImage(SpecModel):
    """One of the rule's own images: its commands run there, handed over by the step's snakemake."""

    url: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\s]+$")]
    path: Annotated[str, Field(max_length=4096, pattern=r"^/[^\s]*$")]


class WorkflowStepSpec(SpecModel):
    """What to run and where. The apiserver keeps it immutable after creation."""

    workflow: WorkflowJob
    backend: Backend
    route: Route | None = None
    operator: Operator = Operator.JOB
    image: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    rule_images: Annotated[list[RuleImage], Field(max_length=16)] = Field(default_factory=list)
    command: Annotated[list[Annotated[str, Field(max_length=16384)]], Field(min_length=1, max_length=1024)]
    working_dir: Annotated[str, Field(max_length=4096, pattern=r"^/")] | None = None
    env: Annotated[list[EnvVar], Field(max_length=256)] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    slurm: SlurmPlacement | None = None
    kueue: KueuePlacement | None = None
    ttl_seconds_after_finished: Annotated[int, Field(ge=0, le=31_536_000)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.backend == Backend.SLURM and (self.slurm is None or self.slurm.cluster is None):
            raise ValueError("backend slurm needs slurm.cluster")
        paths = [i.path for i in self.rule_images]
        if len(set(paths)) != len(paths):
            raise ValueError("ruleImages paths must be unique")
        names = [e.name for e in self.env]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"env names must be unique, repeated: {', '.join(duplicates)}")
        return self


class BackendRef(StatusModel):
    """The backend job or object running the step; build with `for_slurm_job` / `for_object`."""

    kind: BackendKind
    cluster: Annotated[str, Field(max_length=253)] | None = None
    job_id: Annotated[int, Field(ge=1)] | None = None
    name: Annotated[str, Field(max_length=253)] | None = None
    workload: Annotated[str, Field(max_length=253)] | None = None
    allocation: Annotated[str, Field(max_length=253)] | None = None  # the StepAllocation it ran in
    display: Annotated[str, Field(max_length=512)]

    @model_validator(mode="after")
    def _identifies_backend(self) -> Self:
        complete = (
            self.cluster is not None and self.job_id is not None
            if self.kind == BackendKind.SLURM_JOB
            else self.name is not None
        )
        if not complete:
            raise ValueError("a SlurmJob needs cluster and jobId, a Kubernetes object needs name")
        return self

    @classmethod
    def for_slurm_job(cls, cluster: str, job_id: int) -> BackendRef:
        return cls(kind=BackendKind.SLURM_JOB, cluster=cluster, job_id=job_id, display=f"{cluster}/{job_id}")

    @classmethod
    def for_object(cls, kind: BackendKind, name: str, workload: str | None = None) -> BackendRef:
        return cls(kind=kind, name=name, workload=workload, display=f"{kind.value}/{name}")

    def in_allocation(self, allocation: str) -> BackendRef:
        """This job or object (an allocation's) as the reference of a step that ran in `allocation`."""
        return self.model_copy(update={"allocation": allocation})


class WorkflowStepStatus(StatusModel):
    """Written by the controller only."""

    phase: Phase | None = None
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    conditions: Annotated[list[Condition], Field(max_length=32)] = Field(default_factory=list)
    backend_ref: BackendRef | None = None
    exit_code: Annotated[int, Field(ge=0, le=255)] | None = None
    reason: Annotated[str, Field(max_length=1024)] | None = None
    message: Annotated[str, Field(max_length=32768)] | None = None
    start_time: AwareDatetime | None = None
    completion_time: AwareDatetime | None = None
    log_path: Annotated[str, Field(max_length=4096)] | None = None
    log_tail: Annotated[str, Field(max_length=4096)] | None = None


class WorkflowStep(SpecModel):
    """The whole object as the apiserver stores it."""

    api_version: Literal["converged.dev/v1alpha1"] = API_VERSION
    kind: Literal["WorkflowStep"] = "WorkflowStep"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: WorkflowStepSpec
    status: WorkflowStepStatus = Field(default_factory=WorkflowStepStatus)

    def to_manifest(self) -> dict[str, Any]:
        """The object as JSON-ready dict for the Kubernetes API."""
        return dump_manifest(self)
