"""The router's input and output: what a step asks for, what the capacity snapshot shows, and the
decision (pure data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from converged_bridge.api.workflowstep import Backend, Operator, Resources

MPI_OPERATORS = frozenset({Operator.MPIJOB, Operator.MINICLUSTER})
_EMPTY: Mapping[str, int] = MappingProxyType({})
_NO_OTHERS: Mapping[str, object] = MappingProxyType({})


class Preference(StrEnum):
    """What the workflow asks for: one backend, or let the router choose."""

    SLURM = "slurm"
    KUEUE = "kueue"
    AUTO = "auto"


class Decision(StrEnum):
    """The kind of decision, stored in WorkflowStep spec.route.decision."""

    EXPLICIT = "Explicit"  # the backend (or partition) the rule asked for, and it fits
    ONLY_FEASIBLE = "OnlyFeasible"  # one candidate passed the hard constraints
    SHORTEST_WAIT = "ShortestWait"  # several passed; the weighted expected wait chose
    UNVERIFIED = "Unverified"  # capacity unknown (no SlurmCluster status yet); accepted as asked
    REFUSED = "Refused"  # nothing fits; `reason` says why


@dataclass(frozen=True)
class StepRequest:
    """What one step needs, already parsed and validated (see the plugin's resource parsing).

    `shape` is the API's own Resources record (cpus per task, memory and GPUs per node, nodes, tasks,
    runtime): the plugin, the router and the WorkflowStep share it."""

    rule: str
    shape: Resources = field(default_factory=Resources)
    preference: Preference = Preference.AUTO
    operator: Operator | None = None  # None: the router picks job (or mpijob for MPI steps)
    mpi: bool = False
    slurm_cluster: str | None = None
    slurm_partition: str | None = None
    local_queue: str | None = None
    has_image: bool = False
    rule_images: tuple[str, ...] = ()  # the URLs of the rule's own images (snakemake's container:)


@dataclass(frozen=True)
class SlurmPartitionView:
    """One partition of a SlurmCluster, from its status (written by the resource daemon)."""

    name: str
    up: bool = True
    nodes: int = 0
    cpus_total: int = 0
    cpus_idle: int = 0
    mem_mib_per_node: int | None = None
    gpus_total: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # model -> count
    gpus_idle: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    pending_jobs: int = 0
    running_jobs: int = 0
    max_time_minutes: int | None = None


@dataclass(frozen=True)
class SlurmClusterView:
    """A SlurmCluster; `partitions` is None while its capacity is unknown (no status yet)."""

    name: str
    partitions: tuple[SlurmPartitionView, ...] | None
    default_partition: str | None = None
    reachable: bool = True  # False: the daemon's last cycle could not reach it (its capacity is stale)
    mpi: bool = True  # it runs MPI steps (SlurmCluster spec.mpi)


@dataclass(frozen=True)
class KueueFlavorView:
    """One ResourceFlavor of a ClusterQueue: quota and what is in use (CPUs in millicores, memory in
    MiB; no memory quota when the ClusterQueue does not cover memory)."""

    name: str
    cpu_quota_milli: int = 0
    cpu_used_milli: int = 0
    memory_quota_mib: int | None = None
    memory_used_mib: int = 0
    gpu_quota: int = 0
    gpu_used: int = 0
    gpu_model: str | None = None  # from the flavor's converged.dev/gpu-model node label


@dataclass(frozen=True)
class KueueQueueView:
    """A LocalQueue (namespace/name) and the ClusterQueue behind it."""

    local_queue: str
    cluster_queue: str
    flavors: tuple[KueueFlavorView, ...] = ()
    pending_workloads: int = 0
    admitted_workloads: int = 0
    active: bool = True


@dataclass(frozen=True)
class CapacityView:
    """Everything the router looks at, read once per refresh by the I/O shell."""

    slurm: tuple[SlurmClusterView, ...] = ()
    kueue: tuple[KueueQueueView, ...] = ()
    operators: frozenset[Operator] = frozenset({Operator.JOB})  # installed on the Kubernetes side
    # further registered backends' capacity, by backend name, in whatever form their rules read it
    others: Mapping[str, object] = field(default_factory=lambda: _NO_OTHERS)


@dataclass(frozen=True)
class SiteWeights:
    """Site preferences: multipliers on each side's expected wait, and the figures the estimate uses."""

    slurm: float = 1.0
    kueue: float = 1.0
    slurm_startup_seconds: float = 2.0  # submit to running on an idle partition
    kueue_startup_seconds: float = 3.0  # admission, pod scheduling and start
    mean_runtime_seconds: float = 600.0  # for steps without a runtime: how long the work ahead lasts


@dataclass(frozen=True)
class RouteDecision:
    """Where the step goes and why. `backend` is None exactly when the decision is a refusal; the
    fields a backend fills are its own (its rules build the decision)."""

    backend: Backend | None
    decision: Decision
    reason: str
    operator: Operator = Operator.JOB
    slurm_cluster: str | None = None
    slurm_partition: str | None = None
    local_queue: str | None = None
    expected_wait_seconds: float | None = None
    target: str = "-"  # `cluster/partition` on Slurm, `namespace/localqueue` on Kueue, `-` for a refusal
