"""Per-rule resources the converged executor understands, parsed and checked. Pure.

A malformed or unknown value fails with a WorkflowError that names the rule, the resource and the
value: before anything is submitted for what the plan knows, when the job is submitted for what is known
only then (a value snakemake gives as `<TBD>` while the job's input does not exist yet, or a function
of the workflow, which the plan does not call: see `upfront`). Resource names starting with
`converged_` or `slurm_` that are not listed here are refused too (a typo must not silently drop
intent); other names are Snakemake's own or the workflow's, and are ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from snakemake_interface_common.exceptions import WorkflowError

from converged_bridge.api.workflowstep import (
    GPU_MODEL_PATTERN,
    SLURM_NAME_PATTERN,
    Backend,
    Operator,
    Resources,
)
from converged_bridge.routing import Preference, StepRequest
from snakemake_executor_plugin_converged.upfront import is_pending

KNOWN = frozenset(
    {
        "converged_backend",
        "converged_operator",
        "converged_image",
        "converged_slurm_image",
        "converged_local_queue",
        "converged_group",
        "slurm_partition",
        "slurm_account",
        "qos",
        "gpu",
        "gpu_model",
        "nodes",
        "tasks",
        "mpi",
        "runtime",
        "mem_mb",
        "mem_mib",
        "cpus_per_task",
    }
)
OURS = ("converged_", "slurm_")
MPI_LAUNCHERS = frozenset({"srun", "mpirun", "mpiexec"})
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0", ""})
_SLURM_NAME = re.compile(SLURM_NAME_PATTERN)
_GPU_MODEL = re.compile(GPU_MODEL_PATTERN)
_QUEUE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class StepResources:
    """What a snakemake job asks of converged, checked; `request()` turns it into the router's input.

    `shape` is the WorkflowStep API's Resources record, shared with the router and the manifest."""

    shape: Resources = field(default_factory=Resources)
    preference: Preference = Preference.AUTO
    operator: Operator | None = None
    image: str | None = None
    slurm_image: str | None = None  # the image as the Slurm side names it, when that differs
    local_queue: str | None = None  # a LocalQueue name in the run's namespace
    slurm_partition: str | None = None
    slurm_account: str | None = None
    qos: str | None = None
    mpi: bool = False
    group: bool | None = None  # converged_group: run in the group's allocation (None: as the run says)
    # resources the plan does not know yet (`threads` among them): known when the job is submitted, the
    # plan routes and estimates without them
    pending: tuple[str, ...] = ()

    def request(self, rule: str, namespace: str, slurm_cluster: str | None) -> StepRequest:
        return StepRequest(
            rule=rule,
            shape=self.shape,
            preference=self.preference,
            operator=self.operator,
            mpi=self.mpi,
            slurm_cluster=slurm_cluster,
            slurm_partition=self.slurm_partition,
            local_queue=f"{namespace}/{self.local_queue}" if self.local_queue else None,
            has_image=self.image is not None,
        )

    def image_for(self, backend: Backend) -> str | None:
        """The image the step runs in on `backend`."""
        return (self.slurm_image or self.image) if backend == Backend.SLURM else self.image

    def describe(self, backend: Backend | None = None) -> str:
        """The resource shape on `backend` (its image included), for grouping steps in the plan."""
        r = self.shape
        parts = [f"{r.cpus} cpu" + ("" if r.tasks == 1 else f" x {r.tasks} tasks")]
        if r.mem_mib:
            parts.append(f"{r.mem_mib} MiB")
        if r.gpus:
            parts.append(f"{r.gpus} gpu" + (f" {r.gpu_model}" if r.gpu_model else ""))
        if r.nodes > 1:
            parts.append(f"{r.nodes} nodes")
        if self.mpi:
            parts.append("mpi")
        image = self.image_for(backend) if backend else self.image
        if image:
            parts.append(f"image {image}")
        if self.pending:
            parts.append(f"{', '.join(self.pending)} not known yet")
        return ", ".join(parts)


def parse_job_resources(
    rule: str,
    resources: Mapping[str, Any],
    *,
    threads: int,
    default_backend: Preference = Preference.AUTO,
    default_image: str | None = None,
    default_slurm_image: str | None = None,
    default_local_queue: str | None = None,
) -> StepResources:
    """The converged resources of one job of `rule`; raises WorkflowError naming rule and resource."""
    for name in resources:
        if name.startswith(OURS) and name not in KNOWN:
            known = ", ".join(sorted(n for n in KNOWN if n.startswith(OURS)))
            raise WorkflowError(f"rule {rule}: unknown resource {name!r} (converged knows {known})")

    def fail(name: str, problem: str) -> WorkflowError:
        return WorkflowError(f"rule {rule}: resource {name}={resources.get(name)!r}: {problem}")

    unknown = sorted(name for name in KNOWN if is_pending(resources.get(name)))
    if unknown:
        raise fail(
            unknown[0],
            "still not known when its job is submitted (snakemake gives <TBD> for a value it cannot "
            "evaluate yet, such as a function of an input file that does not exist)",
        )

    def integer(name: str, minimum: int) -> int | None:
        value = resources.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            raise fail(name, f"must be an integer >= {minimum}")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or value < minimum:
            raise fail(name, f"must be an integer >= {minimum}")
        return value

    def name_like(name: str, pattern: re.Pattern[str], what: str) -> str | None:
        value = resources.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise fail(name, f"must be {what}")
        return value

    def choice(name: str, options: type[Preference] | type[Operator]) -> str | None:
        value = resources.get(name)
        if value is None:
            return None
        allowed = [o.value for o in options]
        if not isinstance(value, str) or value.lower() not in allowed:
            raise fail(name, f"must be one of {', '.join(allowed)}")
        return value.lower()

    backend = choice("converged_backend", Preference)
    operator_name = choice("converged_operator", Operator)
    gpu_model = name_like("gpu_model", _GPU_MODEL, "a GPU model name of [a-zA-Z0-9_.-]")
    raw_gpu = resources.get("gpu")
    if isinstance(raw_gpu, str) and ":" in raw_gpu:  # the Slurm plugin's "model:count" form
        model, _, count = raw_gpu.rpartition(":")
        if not count.isdigit() or not _GPU_MODEL.fullmatch(model):
            raise fail("gpu", "must be a count or MODEL:COUNT")
        if gpu_model is not None and gpu_model != model:
            raise fail("gpu", f"names model {model!r} but gpu_model is {gpu_model!r}")
        gpus, gpu_model = int(count), model
    else:
        gpus = integer("gpu", 0) or 0
    if gpu_model is not None and gpus == 0:
        raise fail("gpu_model", "needs gpu >= 1")
    nodes = integer("nodes", 1) or 1
    tasks = integer("tasks", 1) or nodes
    if tasks < nodes:
        raise fail("tasks", f"must be at least nodes ({nodes})")
    mpi = _parse_mpi(resources.get("mpi"), fail)
    group = _parse_flag(resources.get("converged_group"), "converged_group", fail)
    operator = Operator(operator_name) if operator_name else None
    if mpi and operator in (Operator.JOB, Operator.JOBSET):
        raise fail("converged_operator", "an MPI step needs mpijob or minicluster")
    mem_mib = integer("mem_mib", 1)
    mem_mb = integer("mem_mb", 1)
    if mem_mib is None and mem_mb is not None:
        mem_mib = math.ceil(mem_mb * 1_000_000 / 2**20)

    def image_ref(name: str) -> str | None:
        value = resources.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip() or value.startswith("-")):
            raise fail(name, "must be a container image reference")
        return value

    # the most specific wins: the rule's Slurm image, the rule's image, then the run's Slurm image
    image = image_ref("converged_image")
    slurm_image = image_ref("converged_slurm_image") or image or default_slurm_image
    image = image or default_image
    local_queue = name_like("converged_local_queue", _QUEUE_NAME, "a LocalQueue name") or default_local_queue
    try:
        shape = Resources(
            cpus=integer("cpus_per_task", 1) or max(1, threads),
            mem_mib=mem_mib,
            gpus=gpus,
            gpu_model=gpu_model,
            nodes=nodes,
            tasks=tasks,
            runtime_minutes=integer("runtime", 1),
        )
    except ValidationError as e:  # the checks above cover the API's rules; this keeps the two in step
        raise WorkflowError(f"rule {rule}: resources: {e.errors()[0]['msg']}") from e
    return StepResources(
        shape=shape,
        preference=Preference(backend) if backend else default_backend,
        operator=operator,
        image=image,
        slurm_image=slurm_image,
        local_queue=local_queue,
        slurm_partition=name_like("slurm_partition", _SLURM_NAME, "a Slurm partition name of [A-Za-z0-9_.-]"),
        slurm_account=name_like("slurm_account", _SLURM_NAME, "a Slurm account name of [A-Za-z0-9_.-]"),
        qos=name_like("qos", _SLURM_NAME, "a Slurm QOS name of [A-Za-z0-9_.-]"),
        mpi=mpi,
        group=group,
    )


def parse_planned_resources(
    rule: str, resources: Mapping[str, Any], *, threads: int | None, **defaults: Any
) -> StepResources:
    """The converged resources of one job of `rule` as far as the plan knows them: values not known yet
    (`<TBD>`, threads None) are left out and listed in `pending`; the rest is checked as at submission."""
    unknown = {name for name in KNOWN if is_pending(resources.get(name))}
    if "mem_mb" in unknown:
        unknown.discard("mem_mib")  # the same value, in MiB
    known = {name: value for name, value in resources.items() if not is_pending(value)}
    parsed = parse_job_resources(rule, known, threads=threads or 1, **defaults)
    pending = sorted(unknown) + (["threads"] if threads is None else [])
    return dataclasses.replace(parsed, pending=tuple(pending)) if pending else parsed


def _parse_flag(value: Any, name: str, fail: Any) -> bool | None:
    """yes/no, true/false, 1/0 (or a bool); None when not given."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE - {""}:
        return False
    raise fail(name, "must be yes or no")


def _parse_mpi(value: Any, fail: Any) -> bool:
    if value is None or value is False:
        return False
    if value is True or (isinstance(value, int) and value == 1):
        return True
    if isinstance(value, int) and value == 0:
        return False
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE or lowered in MPI_LAUNCHERS:
            return True
        if lowered in _FALSE:
            return False
    raise fail("mpi", f"must be true/false or a launcher ({', '.join(sorted(MPI_LAUNCHERS))})")


class ResourceParser:
    """`parse_job_resources` (a job being submitted) and `parse_planned_resources` (`planned`: a job of
    the plan) with the run's defaults, once per distinct (rule, threads, resources): the jobs of a rule
    mostly share their resources, so a DAG of 10,000 jobs parses a handful of times. Values that cannot
    be hashed are parsed every time; a bad value raises for every job that has it."""

    def __init__(
        self,
        *,
        default_backend: Preference = Preference.AUTO,
        default_image: str | None = None,
        default_slurm_image: str | None = None,
        default_local_queue: str | None = None,
    ) -> None:
        self._parse = functools.partial(
            parse_job_resources,
            default_backend=default_backend,
            default_image=default_image,
            default_slurm_image=default_slurm_image,
            default_local_queue=default_local_queue,
        )
        self._plan = functools.partial(
            parse_planned_resources,
            default_backend=default_backend,
            default_image=default_image,
            default_slurm_image=default_slurm_image,
            default_local_queue=default_local_queue,
        )
        self._parsed: dict[Any, StepResources] = {}

    def __call__(self, rule: str, resources: Mapping[str, Any], *, threads: int) -> StepResources:
        return self._cached(self._parse, rule, resources, threads)

    def planned(self, rule: str, resources: Mapping[str, Any], *, threads: int | None) -> StepResources:
        return self._cached(self._plan, rule, resources, threads)

    def _cached(
        self, parse: Any, rule: str, resources: Mapping[str, Any], threads: int | None
    ) -> StepResources:
        try:
            key = (parse is self._plan, rule, threads, frozenset(resources.items()))
            found = self._parsed.get(key)
        except TypeError:  # an unhashable value (a list, say): parse it as it is
            result: StepResources = parse(rule, resources, threads=threads)
            return result
        if found is None:
            found = self._parsed[key] = parse(rule, resources, threads=threads)
        return found
