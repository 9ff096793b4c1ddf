"""SlurmCluster (converged.dev/v1alpha1, cluster-scoped): a Slurm cluster converged submits to and mirrors.

Mirrors crds/converged.dev_slurmclusters.yaml; tests/unit/test_crd_drift.py keeps the two in step.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from converged_bridge.api.base import SpecModel, StatusModel, dump_manifest
from converged_bridge.api.conditions import Condition
from converged_bridge.api.meta import DNS_LABEL_PATTERN, SECRET_KEY_PATTERN, ObjectMeta
from converged_bridge.api.workflowstep import SLURM_NAME_PATTERN, DnsSubdomain, SlurmName
from converged_bridge.wire import API_VERSION

SLURM_USER_PATTERN = r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$"
# Bound into containers with --bind/-v SRC:DST[,...]: ':' and ',' would split the specification.
BIND_PATH_PATTERN = r"^/[^:,]*$"

AbsolutePath = Annotated[str, Field(max_length=4096, pattern=r"^/")]
Namespace = Annotated[str, Field(max_length=63, pattern=DNS_LABEL_PATTERN)]
SlurmUser = Annotated[str, Field(max_length=128, pattern=SLURM_USER_PATTERN)]


class Transport(StrEnum):
    RESTD = "restd"
    CLI = "cli"


class ContainerRuntime(StrEnum):
    APPTAINER = "apptainer"
    SINGULARITY = "singularity"
    CHARLIECLOUD = "charliecloud"
    PODMAN = "podman"
    NONE = "none"


class QuotaPolicy(StrEnum):
    TOTAL = "total"
    IDLE = "idle"


class PartitionState(StrEnum):
    UP = "UP"
    DOWN = "DOWN"
    DRAIN = "DRAIN"
    INACTIVE = "INACTIVE"


class NamespacedSecretKeyRef(SpecModel):
    """A key of a Secret in a named namespace (a SlurmCluster has none of its own)."""

    namespace: Namespace
    name: DnsSubdomain
    key: Annotated[str, Field(max_length=253, pattern=SECRET_KEY_PATTERN)]


class RestdTransport(SpecModel):
    url: Annotated[str, Field(max_length=2048, pattern=r"^https?://")]
    token_secret_ref: NamespacedSecretKeyRef
    user: SlurmUser | None = None
    openapi_version: Annotated[str, Field(max_length=32, pattern=r"^v[0-9]+\.[0-9]+\.[0-9]+$")] | None = None


class CliTransport(SpecModel):
    bin_dir: AbsolutePath | None = None
    slurm_conf: AbsolutePath | None = None


class UserMapping(SpecModel):
    """The Slurm user, and its token, that submits the steps of one namespace."""

    namespace: Namespace
    user: SlurmUser
    token_secret_ref: NamespacedSecretKeyRef


class SlurmDefaults(SpecModel):
    partition: SlurmName | None = None
    account: SlurmName | None = None
    qos: SlurmName | None = None


class QueueSettings(SpecModel):
    cluster_queue: DnsSubdomain | None = None
    cohort: DnsSubdomain | None = None
    quota_policy: QuotaPolicy = QuotaPolicy.IDLE


class SlurmClusterSpec(SpecModel):
    transport: Transport = Transport.RESTD
    restd: RestdTransport | None = None
    cli: CliTransport | None = None
    user_mapping: Annotated[list[UserMapping], Field(max_length=1024)] = Field(default_factory=list)
    container_runtime: ContainerRuntime = ContainerRuntime.APPTAINER
    mpi: bool = True
    bind_paths: Annotated[
        list[Annotated[str, Field(max_length=4096, pattern=BIND_PATH_PATTERN)]], Field(max_length=64)
    ] = Field(default_factory=list)
    defaults: SlurmDefaults | None = None
    partitions: Annotated[
        list[Annotated[str, Field(max_length=128, pattern=SLURM_NAME_PATTERN)]], Field(max_length=256)
    ] = Field(default_factory=list)
    queue: QueueSettings | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.transport == Transport.RESTD and self.restd is None:
            raise ValueError("transport restd needs restd")
        for field, values in (
            ("userMapping namespaces", [m.namespace for m in self.user_mapping]),
            ("bindPaths", self.bind_paths),
            ("partitions", self.partitions),
        ):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{field} must be unique, repeated: {', '.join(repeated)}")
        return self


class PartitionCapacity(StatusModel):
    nodes: Annotated[int, Field(ge=0)] = 0
    cpus: Annotated[int, Field(ge=0)] = 0
    memory_mib: Annotated[int, Field(ge=0)] = Field(default=0, alias="memoryMiB")
    gpus: Annotated[dict[str, Annotated[int, Field(ge=0)]], Field(max_length=64)] = Field(
        default_factory=dict
    )


class PartitionStatus(StatusModel):
    name: Annotated[str, Field(max_length=128)]
    state: PartitionState
    total: PartitionCapacity
    idle: PartitionCapacity
    running_jobs: Annotated[int, Field(ge=0)] = 0
    pending_jobs: Annotated[int, Field(ge=0)] = 0
    max_time_minutes: Annotated[int, Field(ge=1)] | None = None


class SlurmClusterStatus(StatusModel):
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    conditions: Annotated[list[Condition], Field(max_length=32)] = Field(default_factory=list)
    last_sync_time: AwareDatetime | None = None
    slurm_version: Annotated[str, Field(max_length=64)] | None = None
    openapi_version: Annotated[str, Field(max_length=32)] | None = None
    partitions: Annotated[list[PartitionStatus], Field(max_length=256)] = Field(default_factory=list)


class SlurmCluster(SpecModel):
    api_version: Literal["converged.dev/v1alpha1"] = API_VERSION
    kind: Literal["SlurmCluster"] = "SlurmCluster"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: SlurmClusterSpec
    status: SlurmClusterStatus = Field(default_factory=SlurmClusterStatus)

    def to_manifest(self) -> dict[str, Any]:
        """The object as JSON-ready dict for the Kubernetes API."""
        return dump_manifest(self)
