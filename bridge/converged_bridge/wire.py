"""Every name converged puts on the wire, once: API groups, versions, plurals, labels, annotations,
finalizers, resource names and field managers.

Other modules import these; no string below appears as a literal anywhere else in the packages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Kind:
    """Where a kind lives in the API: group ("" for core), version and plural."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def crd_name(self) -> str:
        """The CustomResourceDefinition that serves the kind (`plural.group`)."""
        return f"{self.plural}.{self.group}"


# --- converged's own API ---
GROUP: Final = "converged.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "converged.dev/v1alpha1"
WORKFLOW_STEPS: Final = Kind(GROUP, VERSION, "workflowsteps", "WorkflowStep")
SLURM_CLUSTERS: Final = Kind(GROUP, VERSION, "slurmclusters", "SlurmCluster")
STEP_ALLOCATIONS: Final = Kind(GROUP, VERSION, "stepallocations", "StepAllocation")

# --- labels and annotations on WorkflowSteps (set by the plugin) ---
RUN_LABEL: Final = "converged.dev/run"
RULE_LABEL: Final = "converged.dev/rule"
RULE_ANNOTATION: Final = "converged.dev/rule"  # the rule's exact name (the label is shortened)
# Steps of a run whose controller is embedded in its snakemake process carry this label (value
# "embedded"); deployed controllers leave them alone and the embedded one selects only its own run,
# so a step never has two controllers submitting it.
CONTROLLER_LABEL: Final = "converged.dev/controller"
EMBEDDED: Final = "embedded"
# the plan, as the plugin writes it on each step (small annotations, read by `kubectl converged report`):
# the upstream job ids ("3,4"; "+N" at the end counts ids left out), the plan's group, and the estimated
# ready/start/end in whole seconds from the run's start
DEPENDS_ON_ANNOTATION: Final = "converged.dev/depends-on"
PLAN_GROUP_ANNOTATION: Final = "converged.dev/plan-group"
ESTIMATE_READY_ANNOTATION: Final = "converged.dev/estimate-ready"
ESTIMATE_START_ANNOTATION: Final = "converged.dev/estimate-start"
ESTIMATE_END_ANNOTATION: Final = "converged.dev/estimate-end"
# what the history needs of a step, as one JSON annotation (the plugin writes it, the end-of-run summary,
# the report and the history store read it): its rule's code digest, input size, the plan's estimate, the
# declared limits and the right-sized requests (converged_bridge.history.annotations)
HISTORY_ANNOTATION: Final = "converged.dev/history"
# a step that runs in a StepAllocation carries its name (the plugin sets it; the controller hands the step
# to that allocation's agent instead of submitting it alone)
GROUP_LABEL: Final = "converged.dev/group"
FINALIZER: Final = "converged.dev/backend-cleanup"  # the controller cancels the backend job first
# on a Namespace, set by the site admin: the uid and gid its steps' pods run as on Kubernetes (the
# identity its Slurm user has on the shared filesystem)
RUN_AS_USER_ANNOTATION: Final = "converged.dev/run-as-user"
RUN_AS_GROUP_ANNOTATION: Final = "converged.dev/run-as-group"
RUN_AS_NAME_ANNOTATION: Final = "converged.dev/run-as-name"  # USER and LOGNAME in its pods

# --- labels on the objects a Kubernetes-backed step makes ---
STEP_UID_LABEL: Final = "converged.dev/step-uid"
ALLOCATION_UID_LABEL: Final = "converged.dev/allocation-uid"  # on the Job (and pods) of a StepAllocation
MANAGED_LABEL: Final = "converged.dev/managed-by"
MANAGED_VALUE: Final = "converged"

# --- node labels, resources and taints ---
NODE_KIND_LABEL: Final = "converged.dev/node-kind"
GPU_MODEL_LABEL: Final = "converged.dev/gpu-model"
GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_MODEL_RESOURCE_PREFIX: Final = "converged.dev/gpu-"  # + model: one extended resource per GPU model
SLURM_NODES_RESOURCE: Final = "converged.dev/slurm-nodes"
SLURM_TAINT_KEY: Final = "converged.dev/slurm"
SLURM_CLUSTER_LABEL: Final = "converged.dev/slurm-cluster"
SLURM_PARTITION_LABEL: Final = "converged.dev/slurm-partition"
SLURM_PARTITION_ANNOTATION: Final = "converged.dev/slurm-partition-name"  # the exact Slurm name
OWN_PREFIX: Final = "converged.dev/"  # every label, annotation or resource name of ours starts so

# --- Kueue (the version is negotiated with the API server: see kube.kueue_api) ---
KUEUE_GROUP: Final = "kueue.x-k8s.io"
KUEUE_VERSIONS: Final = ("v1beta2", "v1beta1")  # the ones converged speaks, preferred first
QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL: Final = "kueue.x-k8s.io/priority-class"

# --- the operator kinds a Kubernetes-backed step can be (Kueue admits each) ---
JOBS: Final = Kind("batch", "v1", "jobs", "Job")
JOBSETS: Final = Kind("jobset.x-k8s.io", "v1alpha2", "jobsets", "JobSet")
MPIJOBS: Final = Kind("kubeflow.org", "v2beta1", "mpijobs", "MPIJob")
MINICLUSTERS: Final = Kind("flux-framework.org", "v1alpha2", "miniclusters", "MiniCluster")

# --- core and coordination kinds ---
NODES: Final = Kind("", "v1", "nodes", "Node")
NAMESPACES: Final = Kind("", "v1", "namespaces", "Namespace")
CONFIGMAPS: Final = Kind("", "v1", "configmaps", "ConfigMap")
PODS: Final = Kind("", "v1", "pods", "Pod")
SECRETS: Final = Kind("", "v1", "secrets", "Secret")
EVENTS: Final = Kind("", "v1", "events", "Event")
LEASES: Final = Kind("coordination.k8s.io", "v1", "leases", "Lease")
CRDS: Final = Kind("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition")
NODE_LEASE_NAMESPACE: Final = "kube-node-lease"

# --- who writes ---
CONTROLLER_FIELD_MANAGER: Final = "converged-controller"
DAEMON_FIELD_MANAGER: Final = "converged-daemon"
PLUGIN_FIELD_MANAGER: Final = "converged-snakemake"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
