"""StepAllocation (converged.dev/v1alpha1): one backend allocation that runs a group of steps in turn.

Mirrors crds/converged.dev_stepallocations.yaml; tests/unit/test_crd_drift.py keeps the two in step.
Each step of the group keeps its own WorkflowStep, labelled `converged.dev/group=<allocation name>`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from converged_bridge.api.base import SpecModel, StatusModel, dump_manifest
from converged_bridge.api.conditions import Condition
from converged_bridge.api.meta import ObjectMeta
from converged_bridge.api.workflowstep import (
    GPU_MODEL_PATTERN,
    LABEL_VALUE_PATTERN,
    Backend,
    BackendRef,
    KueuePlacement,
    Phase,
    SlurmPlacement,
)
from converged_bridge.wire import API_VERSION

IDLE_SECONDS_DEFAULT = 300


class SlotResources(SpecModel):
    """What one step holds while it runs in the allocation (one slot)."""

    cpus: Annotated[int, Field(ge=1)] = 1
    mem_mib: Annotated[int, Field(ge=1)] | None = Field(default=None, alias="memMiB")
    gpus: Annotated[int, Field(ge=0)] = 0
    gpu_model: Annotated[str, Field(max_length=63, pattern=GPU_MODEL_PATTERN)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.gpu_model is not None and self.gpus <= 0:
            raise ValueError("gpuModel needs gpus > 0")
        return self


class StepAllocationSpec(SpecModel):
    """The allocation's shape and place; only `closed` and `expected_steps` change after creation."""

    run_id: Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
    group: Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)] | None = None
    backend: Backend
    image: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    working_dir: Annotated[str, Field(max_length=4096, pattern=r"^/")]
    resources: SlotResources = Field(default_factory=SlotResources)
    slots: Annotated[int, Field(ge=1, le=1024)]
    runtime_minutes: Annotated[int, Field(ge=1)]
    idle_seconds: Annotated[int, Field(ge=1, le=86400)] = IDLE_SECONDS_DEFAULT
    warm: bool = False  # steps that are `python3 -m snakemake ...` fork one snakemake imported once
    closed: bool = False
    expected_steps: Annotated[int, Field(ge=0)] = 0
    slurm: SlurmPlacement | None = None
    kueue: KueuePlacement | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.backend == Backend.SLURM and (self.slurm is None or self.slurm.cluster is None):
            raise ValueError("backend slurm needs slurm.cluster")
        return self


class AllocationSteps(StatusModel):
    """The allocation's steps as the controller last counted them."""

    total: Annotated[int, Field(ge=0)] = 0
    running: Annotated[int, Field(ge=0)] = 0
    finished: Annotated[int, Field(ge=0)] = 0
    failed: Annotated[int, Field(ge=0)] = 0


class StepAllocationStatus(StatusModel):
    """Written by the controller only."""

    phase: Phase | None = None
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    conditions: Annotated[list[Condition], Field(max_length=32)] = Field(default_factory=list)
    backend_ref: BackendRef | None = None
    reason: Annotated[str, Field(max_length=1024)] | None = None
    message: Annotated[str, Field(max_length=32768)] | None = None
    target: Annotated[str, Field(max_length=512)] | None = None
    start_time: AwareDatetime | None = None
    completion_time: AwareDatetime | None = None
    log_path: Annotated[str, Field(max_length=4096)] | None = None
    steps: AllocationSteps | None = None


class StepAllocation(SpecModel):
    """The whole object as the apiserver stores it."""

    api_version: Literal["converged.dev/v1alpha1"] = API_VERSION
    kind: Literal["StepAllocation"] = "StepAllocation"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: StepAllocationSpec
    status: StepAllocationStatus = Field(default_factory=StepAllocationStatus)

    def to_manifest(self) -> dict[str, Any]:
        """The object as JSON-ready dict for the Kubernetes API."""
        return dump_manifest(self)
