"""The converged.dev/v1alpha1 API as pydantic models; crds/ holds the authoritative schema."""

from converged_bridge.api.conditions import Condition, ConditionStatus, find_condition, set_condition
from converged_bridge.api.meta import ObjectMeta
from converged_bridge.api.slurmcluster import (
    ContainerRuntime,
    SlurmCluster,
    SlurmClusterSpec,
    SlurmClusterStatus,
    Transport,
)
from converged_bridge.api.stepallocation import (
    SlotResources,
    StepAllocation,
    StepAllocationSpec,
    StepAllocationStatus,
)
from converged_bridge.api.workflowstep import (
    Backend,
    BackendKind,
    BackendRef,
    EnvVar,
    Operator,
    Phase,
    Resources,
    WorkflowStep,
    WorkflowStepSpec,
    WorkflowStepStatus,
)

__all__ = [
    "Backend",
    "BackendKind",
    "BackendRef",
    "Condition",
    "ConditionStatus",
    "ContainerRuntime",
    "EnvVar",
    "ObjectMeta",
    "Operator",
    "Phase",
    "Resources",
    "SlotResources",
    "SlurmCluster",
    "SlurmClusterSpec",
    "SlurmClusterStatus",
    "StepAllocation",
    "StepAllocationSpec",
    "StepAllocationStatus",
    "Transport",
    "WorkflowStep",
    "WorkflowStepSpec",
    "WorkflowStepStatus",
    "find_condition",
    "set_condition",
]
