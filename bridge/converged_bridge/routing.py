"""Where a workflow step runs: Slurm or Kueue. Pure — a capacity snapshot in, one decision out.

`route(request, capacity, weights)` works in two passes:

1. **Hard constraints** rule candidates out, each with the reason why: the GPU model must exist on
   that side, the runtime must fit the partition's time limit, an MPI step must fit the partition
   (nodes, tasks x cpus) or have an MPI-capable operator on Kubernetes, the operator must be installed,
   a Kubernetes step needs a container image.
2. **Expected wait** ranks what is left: zero when the step fits into idle capacity and nothing is
   pending ahead of it, otherwise the work queued ahead divided by the slots that serve it. Each side
   adds its start-up latency and multiplies by its site weight.

An explicit backend (`converged_backend`) or partition wins when feasible; when it is not, the
decision is a refusal naming the constraint. Every decision carries a one-line reason.

A snapshot does not know the steps routed since it was read: `charge` counts a placed step against it
(idle CPUs, GPUs or free quota while they last, then one more queued job), and `route_batch` routes a
burst charging each step as it is placed, so equal steps fill their best target and then spread to the
next instead of herding onto the first.

A SlurmCluster whose status the resource daemon has not written yet has unknown capacity: its default
(or the requested) partition is accepted unverified, and the reason says so.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from converged_bridge.api.workflowstep import Backend, Operator

MPI_OPERATORS = frozenset({Operator.MPIJOB, Operator.MINICLUSTER})
_EMPTY: Mapping[str, int] = MappingProxyType({})


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
    """What one step needs, already parsed and validated (see the plugin's resource parsing)."""

    rule: str
    preference: Preference = Preference.AUTO
    operator: Operator | None = None  # None: the router picks job (or mpijob for MPI steps)
    cpus: int = 1  # per task
    mem_mib: int | None = None  # per node
    gpus: int = 0  # per node
    gpu_model: str | None = None
    nodes: int = 1
    tasks: int = 1
    mpi: bool = False
    runtime_minutes: int | None = None
    slurm_cluster: str | None = None
    slurm_partition: str | None = None
    local_queue: str | None = None
    has_image: bool = False


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


@dataclass(frozen=True)
class KueueFlavorView:
    """One ResourceFlavor of a ClusterQueue: quota and what is in use (CPUs in millicores)."""

    name: str
    cpu_quota_milli: int = 0
    cpu_used_milli: int = 0
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
    """Where the step goes and why. `backend` is None exactly when the decision is a refusal."""

    backend: Backend | None
    decision: Decision
    reason: str
    operator: Operator = Operator.JOB
    slurm_cluster: str | None = None
    slurm_partition: str | None = None
    local_queue: str | None = None
    expected_wait_seconds: float | None = None

    @property
    def target(self) -> str:
        """`cluster/partition` on Slurm, `namespace/localqueue` on Kueue, `-` for a refusal."""
        if self.backend == Backend.SLURM:
            return f"{self.slurm_cluster}/{self.slurm_partition or '(default)'}"
        if self.backend == Backend.KUEUE:
            return self.local_queue or "-"
        return "-"


# A candidate, kept as a plain tuple because route() builds thousands per second:
# (sort key, backend, cluster or queue view, partition view or None, unweighted wait or None, operator)
# The sort key is (weighted wait, spares GPUs, not Slurm, target name): equal waits keep GPU partitions
# for GPU steps, then prefer Slurm, then go by name, so the decision is deterministic.
_Key = tuple[float, bool, bool, str]
_Candidate = tuple[_Key, Backend, Any, Any, float | None, Operator]
# A refusal, formatted only when a reason needs it: (side and target, template, arguments)
_Refusal = tuple[str, str, tuple[Any, ...]]


def route(request: StepRequest, capacity: CapacityView, weights: SiteWeights) -> RouteDecision:
    """The backend and target for `request`, or a refusal; see the module docstring."""
    candidates, refusals = _candidates(request, capacity, weights)
    candidates.sort(key=lambda c: c[0])
    return _choose(request, candidates, refusals, weights)


def route_batch(
    requests: Sequence[StepRequest], capacity: CapacityView, weights: SiteWeights
) -> list[RouteDecision]:
    """`route` for each of `requests` in order, each placed step charged against the snapshot (see
    `charge`), so a burst of equal steps spreads once its first target fills instead of herding there.

    Hard constraints depend on totals only, so each distinct request is checked once; after that only
    the waits of its candidates move, and only where a step was placed. Equal requests sent to the
    same target with the same expected wait share one decision (and its reason)."""
    batch = _Batch(capacity, weights)
    shapes: dict[StepRequest, _Shape] = {}
    out = []
    for request in requests:
        shape = shapes.get(request)
        if shape is None:
            shape = shapes[request] = _Shape(request, batch)
        decision = shape.best(batch)
        out.append(decision)
        batch.place(request, decision)
    return out


def charge(
    capacity: CapacityView, request: StepRequest, decision: RouteDecision, count: int = 1
) -> CapacityView:
    """`capacity` with `count` steps like `request` placed where `decision` sends them: on idle capacity
    (or free quota) while it lasts, the rest queued behind the pending work. Pure; a refusal or an
    unverified decision changes nothing."""
    if decision.expected_wait_seconds is None or count <= 0:
        return capacity
    if decision.backend == Backend.SLURM:
        clusters = tuple(
            replace(
                c,
                partitions=tuple(
                    _charge_partition(p, request, count) if p.name == decision.slurm_partition else p
                    for p in c.partitions
                ),
            )
            if c.name == decision.slurm_cluster and c.partitions is not None
            else c
            for c in capacity.slurm
        )
        return replace(capacity, slurm=clusters)
    queues = tuple(
        _charge_queue(q, request, count) if q.local_queue == decision.local_queue else q
        for q in capacity.kueue
    )
    return replace(capacity, kueue=queues)


def _candidates(
    request: StepRequest, capacity: CapacityView, weights: SiteWeights
) -> tuple[list[_Candidate], list[_Refusal]]:
    candidates: list[_Candidate] = []
    refusals: list[_Refusal] = []
    if request.preference is not Preference.KUEUE:
        _slurm_candidates(request, capacity, weights, candidates, refusals)
    if request.preference is not Preference.SLURM:
        _kueue_candidates(request, capacity, weights, candidates, refusals)
    return candidates, refusals


def _choose(
    request: StepRequest, candidates: list[_Candidate], refusals: list[_Refusal], weights: SiteWeights
) -> RouteDecision:
    """The decision for the first of `candidates` (sorted best first), or a refusal when there are none."""
    if not candidates:
        asked = "" if request.preference == Preference.AUTO else f"converged_backend={request.preference}: "
        detail = "; ".join(map(_format_refusal, refusals)) or "no Slurm cluster or Kueue queue is configured"
        return RouteDecision(backend=None, decision=Decision.REFUSED, reason=f"{asked}{detail}")
    _, backend, where, partition, wait, operator = candidates[0]
    if wait is None:
        decision = Decision.UNVERIFIED
    elif len(candidates) > 1:
        decision = Decision.SHORTEST_WAIT
    elif request.preference != Preference.AUTO or request.slurm_partition:
        decision = Decision.EXPLICIT
    else:
        decision = Decision.ONLY_FEASIBLE
    reason = _summary(request, candidates[0], weights)
    if len(candidates) > 1:
        runner_up = candidates[1]
        reason += f"; beats {runner_up[1].value} {runner_up[0][3]} (weighted wait {runner_up[0][0]:.0f}s)"
    elif refusals:
        reason += f"; not {_format_refusal(refusals[0])}"
    if backend == Backend.SLURM:
        return RouteDecision(
            backend=backend,
            decision=decision,
            reason=reason,
            operator=operator,
            slurm_cluster=where.name,
            slurm_partition=partition.name if partition is not None else _asked_partition(request, where),
            expected_wait_seconds=wait,
        )
    return RouteDecision(
        backend=backend,
        decision=decision,
        reason=reason,
        operator=operator,
        local_queue=where.local_queue,
        expected_wait_seconds=wait,
    )


class _Batch:
    """The snapshot of one `route_batch`, with the steps placed so far charged to their targets, and a
    version per target that moves with every charge."""

    def __init__(self, capacity: CapacityView, weights: SiteWeights) -> None:
        self.capacity = capacity
        self.weights = weights
        self.partitions = {
            (c.name, p.name): p for c in capacity.slurm if c.partitions is not None for p in c.partitions
        }
        self.queues = {q.local_queue: q for q in capacity.kueue}
        self.versions: dict[Any, int] = {}

    def view(self) -> CapacityView:
        slurm = tuple(
            c
            if c.partitions is None
            else replace(c, partitions=tuple(self.partitions[c.name, p.name] for p in c.partitions))
            for c in self.capacity.slurm
        )
        kueue = tuple(self.queues[q.local_queue] for q in self.capacity.kueue)
        return replace(self.capacity, slurm=slurm, kueue=kueue)

    def place(self, request: StepRequest, decision: RouteDecision) -> None:
        if decision.expected_wait_seconds is None:  # refused, or capacity unknown: nothing to charge
            return
        target: Any
        if decision.backend == Backend.SLURM:
            target = (decision.slurm_cluster, decision.slurm_partition)
            self.partitions[target] = _charge_partition(self.partitions[target], request, 1)
        else:
            target = decision.local_queue
            self.queues[target] = _charge_queue(self.queues[target], request, 1)
        self.versions[target] = self.versions.get(target, 0) + 1

    def refresh(self, request: StepRequest, candidate: _Candidate) -> _Candidate:
        """`candidate` with its wait and view as the charges so far left them."""
        key, backend, where, partition, wait, operator = candidate
        w = self.weights
        if wait is None:
            return candidate
        if backend == Backend.SLURM:
            partition = self.partitions[where.name, partition.name]
            wait = w.slurm_startup_seconds + _slurm_wait(request, partition, w)
            return (wait * w.slurm, *key[1:]), backend, where, partition, wait, operator
        where = self.queues[where.local_queue]
        wait = w.kueue_startup_seconds + _kueue_wait(request, where, _kueue_flavors(request, where), w)
        return (wait * w.kueue, *key[1:]), backend, where, partition, wait, operator


def _target(candidate: _Candidate) -> Any:
    _, backend, where, partition, _, _ = candidate
    if backend == Backend.SLURM:
        return (where.name, partition.name if partition is not None else None)
    return where.local_queue


class _Shape:
    """One distinct request in a `route_batch`: its candidates in a heap by key, each stamped with its
    target's version; a stale key is a lower bound of the real one (charges only lengthen waits), so
    a fresh head is the best candidate."""

    def __init__(self, request: StepRequest, batch: _Batch) -> None:
        self.request = request
        candidates, self.refusals = _candidates(request, batch.view(), batch.weights)
        self.heap = [(c[0], batch.versions.get(_target(c), 0), i, c) for i, c in enumerate(candidates)]
        heapq.heapify(self.heap)
        self.refused = None if candidates else _choose(request, [], self.refusals, batch.weights)
        self.decisions: dict[tuple[Any, float | None], RouteDecision] = {}  # (target, wait) ->

    def best(self, batch: _Batch) -> RouteDecision:
        if self.refused is not None:
            return self.refused
        heap = self.heap
        while True:
            _, version, i, candidate = heap[0]
            target = _target(candidate)
            now = batch.versions.get(target, 0)
            if version == now:
                break
            fresh = batch.refresh(self.request, candidate)
            heapq.heapreplace(heap, (fresh[0], now, i, fresh))
        decision = self.decisions.get((target, candidate[4]))
        if decision is None:  # a new target, or a new wait there: the reason tells the state now
            ranked = [candidate]
            if len(heap) > 1:
                runner_up = min(heap[1:3])[3]  # the second smallest of a heap; its key may be stale
                ranked.append(batch.refresh(self.request, runner_up))
            decision = _choose(self.request, ranked, self.refusals, batch.weights)
            self.decisions[target, candidate[4]] = decision
        return decision


def _format_refusal(refusal: _Refusal) -> str:
    where, template, args = refusal
    return f"{where}: {template.format(*args)}"


def _summary(request: StepRequest, candidate: _Candidate, weights: SiteWeights) -> str:
    key, backend, where, partition, _, _ = candidate
    if backend == Backend.SLURM:
        if partition is None:
            return f"slurm {key[3]}: capacity unknown (SlurmCluster has no status yet), accepted unverified"
        return f"slurm {key[3]}: {_slurm_wait_text(request, partition, weights)}"
    return f"kueue {key[3]}: {_kueue_wait_text(request, where, weights)}"


def _asked_partition(request: StepRequest, cluster: SlurmClusterView) -> str | None:
    return request.slurm_partition or cluster.default_partition


# --- Slurm ---
def _slurm_candidates(
    request: StepRequest,
    capacity: CapacityView,
    weights: SiteWeights,
    out: list[_Candidate],
    refusals: list[_Refusal],
) -> None:
    if request.operator is not None and request.operator is not Operator.JOB:
        refusals.append(("slurm", "operator {} runs on Kubernetes only", (request.operator.value,)))
        return
    wanted_cluster, wanted_partition = request.slurm_cluster, request.slurm_partition
    before = len(out)
    seen_cluster = False
    for cluster in capacity.slurm:
        if wanted_cluster is not None and cluster.name != wanted_cluster:
            continue
        seen_cluster = True
        if cluster.partitions is None:
            target = f"{cluster.name}/{_asked_partition(request, cluster) or '(default)'}"
            key = (weights.slurm_startup_seconds * weights.slurm, False, False, target)
            out.append((key, Backend.SLURM, cluster, None, None, Operator.JOB))
            continue
        matched = False
        for partition in cluster.partitions:
            if wanted_partition is not None and partition.name != wanted_partition:
                continue
            matched = True
            problem = _slurm_misfit(request, partition)
            if problem is not None:
                refusals.append((f"slurm {cluster.name}/{partition.name}", *problem))
                continue
            wait = weights.slurm_startup_seconds + _slurm_wait(request, partition, weights)
            spares = request.gpus == 0 and bool(partition.gpus_total)
            key = (wait * weights.slurm, spares, False, f"{cluster.name}/{partition.name}")
            out.append((key, Backend.SLURM, cluster, partition, wait, Operator.JOB))
        if not matched:
            refusals.append((f"slurm {cluster.name}", "has no partition {!r}", (wanted_partition,)))
    if not seen_cluster and len(out) == before:
        named = f" named {wanted_cluster!r}" if wanted_cluster else ""
        refusals.append(("slurm", "no SlurmCluster{}", (named,)))


def _slurm_misfit(request: StepRequest, p: SlurmPartitionView) -> tuple[str, tuple[Any, ...]] | None:
    """Why `request` can never run on `p`, as (template, arguments); None when it can."""
    if not p.up:
        return "partition is not UP", ()
    if request.gpus > 0:
        available = _gpus_of_model(p.gpus_total, request.gpu_model)
        if available == 0:
            return "no {}GPUs", (f"{request.gpu_model} " if request.gpu_model else "",)
        per_node = -(-available // max(1, p.nodes))  # ceiling: GPU nodes of a partition are alike
        if request.gpus > per_node:
            return "needs {} GPUs per node, nodes have {}", (request.gpus, per_node)
    runtime, limit = request.runtime_minutes, p.max_time_minutes
    if runtime and limit and runtime > limit:
        return "runtime {} min exceeds the time limit {} min", (runtime, limit)
    if request.nodes > p.nodes:
        return "needs {} nodes, has {}", (request.nodes, p.nodes)
    cpus = request.tasks * request.cpus
    if cpus > p.cpus_total:
        return "needs {} CPUs, has {}", (cpus, p.cpus_total)
    if request.mem_mib and p.mem_mib_per_node and request.mem_mib > p.mem_mib_per_node:
        return "needs {} MiB per node, nodes have {}", (request.mem_mib, p.mem_mib_per_node)
    return None


def _slurm_fits_idle(request: StepRequest, p: SlurmPartitionView) -> bool:
    if request.tasks * request.cpus > p.cpus_idle:
        return False
    return request.gpus == 0 or request.gpus * request.nodes <= _gpus_of_model(p.gpus_idle, request.gpu_model)


def _slurm_wait(request: StepRequest, p: SlurmPartitionView, weights: SiteWeights) -> float:
    """Seconds until the step starts: 0 on idle capacity with nothing pending, else the work queued
    ahead (the pending jobs, plus one for the running ones when it does not fit) over the slots."""
    fits_idle = _slurm_fits_idle(request, p)
    if fits_idle and p.pending_jobs == 0:
        return 0.0
    if request.gpus:
        slots = max(1, _gpus_of_model(p.gpus_total, request.gpu_model) // request.gpus)
    else:
        slots = max(1, p.cpus_total // max(1, request.tasks * request.cpus))
    return (p.pending_jobs + (0 if fits_idle else 1)) * weights.mean_runtime_seconds / slots


def _slurm_wait_text(request: StepRequest, p: SlurmPartitionView, weights: SiteWeights) -> str:
    counts = f"idle {p.cpus_idle}/{p.cpus_total} CPUs"
    if request.gpus:
        idle = _gpus_of_model(p.gpus_idle, request.gpu_model)
        counts += f", {idle}/{_gpus_of_model(p.gpus_total, request.gpu_model)} GPUs"
    counts += f", {p.pending_jobs} pending"
    wait = _slurm_wait(request, p, weights)
    if wait == 0.0:
        return f"fits idle capacity ({counts})"
    return f"expected wait {wait:.0f}s ({counts})"


def _gpus_of_model(gpus: Mapping[str, int], model: str | None) -> int:
    if model is None:
        return sum(gpus.values())
    if model in gpus:
        return gpus[model]
    lowered = model.lower()
    return sum(n for m, n in gpus.items() if m.lower() == lowered)


# --- Kueue ---
def _kueue_candidates(
    request: StepRequest,
    capacity: CapacityView,
    weights: SiteWeights,
    out: list[_Candidate],
    refusals: list[_Refusal],
) -> None:
    operator = request.operator or (Operator.MPIJOB if request.mpi else Operator.JOB)
    if operator not in capacity.operators:
        refusals.append(("kueue", "operator {} is not installed", (operator.value,)))
        return
    if request.mpi and operator not in MPI_OPERATORS:
        refusals.append(("kueue", "MPI needs operator mpijob or minicluster, not {}", (operator.value,)))
        return
    if not request.has_image:
        refusals.append(("kueue", "no container image (set the image setting or converged_image)", ()))
        return
    found = False
    for queue in capacity.kueue:
        if request.local_queue is not None and queue.local_queue != request.local_queue:
            continue
        found = True
        flavors = _kueue_flavors(request, queue) if queue.active else []
        if not flavors:
            refusals.append((f"kueue {queue.local_queue}", *_kueue_misfit(request, queue)))
            continue
        wait = weights.kueue_startup_seconds + _kueue_wait(request, queue, flavors, weights)
        key = (wait * weights.kueue, False, True, queue.local_queue)
        out.append((key, Backend.KUEUE, queue, None, wait, operator))
    if not found:
        named = f" {request.local_queue!r}" if request.local_queue else ""
        refusals.append(("kueue", "no LocalQueue{}", (named,)))


def _kueue_flavors(request: StepRequest, q: KueueQueueView) -> list[KueueFlavorView]:
    """The flavors whose quota can ever hold the step (and that have its GPU model)."""
    cpu_milli = request.tasks * request.cpus * 1000
    gpus = request.gpus * request.nodes
    model = request.gpu_model.lower() if request.gpu_model else None
    return [
        f
        for f in q.flavors
        if f.cpu_quota_milli >= cpu_milli
        and f.gpu_quota >= gpus
        and (not gpus or model is None or (f.gpu_model or "").lower() == model)
    ]


def _kueue_misfit(request: StepRequest, q: KueueQueueView) -> tuple[str, tuple[Any, ...]]:
    """Why no flavor of `q` can ever hold `request` (called once `_kueue_flavors` found none)."""
    if not q.active:
        return "ClusterQueue {} is not active", (q.cluster_queue,)
    if request.gpus:
        model = request.gpu_model.lower() if request.gpu_model else None
        if not any(
            f.gpu_quota > 0 and (model is None or (f.gpu_model or "").lower() == model) for f in q.flavors
        ):
            return "no flavor with {}GPUs", (f"{request.gpu_model} " if request.gpu_model else "",)
    return "needs {} CPUs{}, no flavor has that quota", (
        request.tasks * request.cpus,
        f" and {request.gpus * request.nodes} GPUs" if request.gpus else "",
    )


def _kueue_free_flavor(request: StepRequest, flavors: list[KueueFlavorView]) -> KueueFlavorView | None:
    cpu_milli = request.tasks * request.cpus * 1000
    gpus = request.gpus * request.nodes
    for f in flavors:
        if f.cpu_quota_milli - f.cpu_used_milli >= cpu_milli and f.gpu_quota - f.gpu_used >= gpus:
            return f
    return None


def _kueue_wait(
    request: StepRequest, q: KueueQueueView, flavors: list[KueueFlavorView], weights: SiteWeights
) -> float:
    """Like `_slurm_wait`: 0 when a flavor has free quota and nothing is pending, else the workloads
    ahead over the slots of the largest fitting flavor."""
    free = _kueue_free_flavor(request, flavors)
    if free is not None and q.pending_workloads == 0:
        return 0.0
    biggest = max(f.cpu_quota_milli for f in flavors)
    slots = max(1, biggest // (request.tasks * request.cpus * 1000 or 1))
    return (q.pending_workloads + (0 if free is not None else 1)) * weights.mean_runtime_seconds / slots


def _kueue_wait_text(request: StepRequest, q: KueueQueueView, weights: SiteWeights) -> str:
    counts = f"{q.pending_workloads} pending, {q.admitted_workloads} admitted"
    flavors = _kueue_flavors(request, q)
    free = _kueue_free_flavor(request, flavors)
    if free is not None and q.pending_workloads == 0:
        return f"fits free quota of flavor {free.name} ({counts})"
    return f"expected wait {_kueue_wait(request, q, flavors, weights):.0f}s ({counts})"


# --- charging placed steps ---
def _charge_partition(p: SlurmPartitionView, request: StepRequest, count: int) -> SlurmPartitionView:
    cpus = request.tasks * request.cpus
    gpus = request.gpus * request.nodes
    room = p.cpus_idle // cpus if cpus else count
    if gpus:
        room = min(room, _gpus_of_model(p.gpus_idle, request.gpu_model) // gpus)
    started = max(0, min(count, room))
    return SlurmPartitionView(  # built directly: dataclasses.replace costs twice as much, per placed step
        p.name,
        p.up,
        p.nodes,
        p.cpus_total,
        p.cpus_idle - started * cpus,
        p.mem_mib_per_node,
        p.gpus_total,
        _take_gpus(p.gpus_idle, request.gpu_model, started * gpus) if gpus else p.gpus_idle,
        p.pending_jobs + count - started,
        p.running_jobs + started,
        p.max_time_minutes,
    )


def _take_gpus(idle: Mapping[str, int], model: str | None, n: int) -> Mapping[str, int]:
    """`idle` less `n` GPUs of `model` (any model when None, the most idle first)."""
    left = dict(idle)
    lowered = model.lower() if model else None
    for m in sorted(left, key=lambda m: -left[m]):
        if lowered is not None and m.lower() != lowered:
            continue
        taken = min(n, left[m])
        left[m] -= taken
        n -= taken
    return left


def _charge_queue(q: KueueQueueView, request: StepRequest, count: int) -> KueueQueueView:
    cpu_milli = request.tasks * request.cpus * 1000
    gpus = request.gpus * request.nodes
    fitting = {f.name for f in _kueue_flavors(request, q)}
    flavors, admitted = [], 0
    for f in q.flavors:  # Kueue tries the flavors in order
        take = 0
        if f.name in fitting and count > admitted:
            room = (f.cpu_quota_milli - f.cpu_used_milli) // cpu_milli if cpu_milli else count
            if gpus:
                room = min(room, (f.gpu_quota - f.gpu_used) // gpus)
            take = max(0, min(count - admitted, room))
        flavors.append(
            KueueFlavorView(
                f.name,
                f.cpu_quota_milli,
                f.cpu_used_milli + take * cpu_milli,
                f.gpu_quota,
                f.gpu_used + take * gpus,
                f.gpu_model,
            )
            if take
            else f
        )
        admitted += take
    return KueueQueueView(
        q.local_queue,
        q.cluster_queue,
        tuple(flavors),
        q.pending_workloads + count - admitted,
        q.admitted_workloads + admitted,
        q.active,
    )
