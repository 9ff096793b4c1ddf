"""Typed snapshots of Slurm capacity per partition, parsed from what Slurm answers (pure: no I/O).

Sources, each read into the same `NodeGroup` / `PartitionInfo` records:
- slurmrestd v0.0.38 (Slurm 22.05) `/nodes` and `/partitions`; 22.05's `sinfo --json` prints the same
  node list as `/nodes` (and no partitions: `scontrol show partition --oneliner` fills that gap);
- slurmrestd v0.0.40-v0.0.45 (Slurm 23.11+, captured from 24.11 and 26.05) `/nodes` and `/partitions`:
  states as lists, numbers as {set, infinite, number} objects (v0.0.45 adds partition flags and turns
  `cpus.task_binding` into a list, nothing read here);
- 24.11's and 26.05's `sinfo --json`: a list of groups of nodes that share partition and state, each
  carrying its partition record. A group stands for `nodes.total` nodes; per-node figures (memory, GRES)
  are scaled by that count, which is exact for groups of identical nodes, which is what sinfo groups.

`build_capacity_snapshot` folds nodes, partitions and the job listing into a `CapacitySnapshot`.
Capacity counts only nodes in service: a node that is down, drained or draining, failed or not yet
configured (FUTURE) cannot take new work and is left out of `total` and `idle`. NOT_RESPONDING and
UNKNOWN are not out of service: Slurm keeps scheduling on such a node until SlurmdTimeout marks it
DOWN, and every node passes through them for seconds when slurmctld restarts (counting them out would
zero the quotas in every such flap).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from converged_bridge.api.slurmcluster import PartitionState
from converged_bridge.slurm.jobs import JobState, SlurmJob, SlurmParseError, _minutes

# Node state words (base states and flags, upper case) that take a node out of service.
OUT_OF_SERVICE = frozenset(
    {
        "DOWN",
        "DRAIN",
        "DRAINED",
        "DRAINING",
        "FAIL",
        "FAILING",
        "FUTURE",
        "ERROR",
        "INVALID",
        "INVALID_REG",
        "POWERING_DOWN",
        "POWER_DOWN",
    }
)
_INFINITE_MINUTES = 0xFFFFFFFE  # Slurm's INFINITE/NO_VAL (uint32) as v0.0.38 prints them


@dataclass(frozen=True, slots=True)
class Resources:
    """An amount of Slurm capacity. `gpus` maps GPU model (gres type) to count; untyped GPUs under "gpu"."""

    nodes: int = 0
    cpus: int = 0
    memory_mib: int = 0
    gpus: Mapping[str, int] = field(default_factory=dict)

    @property
    def gpu_total(self) -> int:
        return sum(self.gpus.values())


@dataclass(frozen=True, slots=True)
class PartitionSnapshot:
    name: str
    state: PartitionState
    total: Resources
    idle: Resources
    max_time_minutes: int | None = None  # None when unlimited
    running_jobs: int = 0
    pending_jobs: int = 0


@dataclass(frozen=True, slots=True)
class CapacitySnapshot:
    """What one Slurm cluster can run, per partition, at one moment."""

    slurm_version: str
    source: str  # where it came from, e.g. "slurmrestd v0.0.38" or "sinfo data_parser/v0.0.42"
    partitions: tuple[PartitionSnapshot, ...]  # sorted by name

    def partition(self, name: str) -> PartitionSnapshot | None:
        return next((p for p in self.partitions if p.name == name), None)


@dataclass(frozen=True, slots=True)
class NodeGroup:
    """One node, or a group of `count` alike nodes (sinfo 24.11), with per-group totals."""

    names: tuple[str, ...]
    partitions: tuple[str, ...]
    states: frozenset[str]
    count: int
    cpus: int
    alloc_cpus: int
    memory_mib: int
    alloc_memory_mib: int
    gpus: Mapping[str, int]
    gpus_used: Mapping[str, int]
    idle_nodes: int  # nodes with nothing allocated

    @property
    def in_service(self) -> bool:
        return not (self.states & OUT_OF_SERVICE)


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    name: str
    state: PartitionState
    max_time_minutes: int | None


@dataclass(frozen=True, slots=True)
class NodesReading:
    """One parsed answer about nodes; `partitions` is empty when the source carries none (22.05)."""

    slurm_version: str
    source: str
    nodes: tuple[NodeGroup, ...]
    partitions: tuple[PartitionInfo, ...] = ()

    @property
    def has_partitions(self) -> bool:
        return bool(self.partitions)


@runtime_checkable
class CapacitySource(Protocol):
    """A Slurm transport that can report capacity (both transports do)."""

    def query_capacity(self, *, refresh_partitions: bool = True) -> CapacitySnapshot:
        """Nodes, partitions and job counts in as few requests as the source allows."""
        ...


# --- small readers ---
def _number(value: Any) -> int | None:
    """An int, or a v0.0.40+ number object; None when unset or infinite."""
    if isinstance(value, Mapping):
        if not value.get("set", False) or value.get("infinite", False):
            return None
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _int(value: Any) -> int:
    n = _number(value)
    return n if n is not None and n > 0 else 0


def _max_minutes(value: Any) -> int | None:
    n = _number(value)
    if n is None or n <= 0 or n >= _INFINITE_MINUTES:
        return None
    return n


def _states(value: Any, flags: Any = ()) -> frozenset[str]:
    words = value if isinstance(value, list) else [value] if value else []
    words = [*words, *(flags if isinstance(flags, list) else [])]
    out = set()
    for w in words:
        text = str(w).upper()
        out.add(text.rstrip("*~#!%$@^-+"))
        if text.endswith("*"):  # sinfo's "not responding" marker
            out.add("NOT_RESPONDING")
    return frozenset(out)


def _partition_state(value: Any) -> PartitionState:
    words = value if isinstance(value, list) else [value]
    for w in words:
        try:
            return PartitionState(str(w).upper())
        except ValueError:
            continue
    return PartitionState.INACTIVE


def slurm_release(doc: Mapping[str, Any]) -> str:
    """Slurm's release from an answer's meta (22.05 spells it `Slurm`, 23.02+ `slurm`)."""
    meta = doc.get("meta") or {}
    slurm = meta.get("slurm") or meta.get("Slurm") or {}
    return str(slurm.get("release") or "unknown")


def data_parser(doc: Mapping[str, Any]) -> str:
    """The dialect an answer speaks: `openapi/v0.0.38` (22.05) or `data_parser/v0.0.4x` (23.11+)."""
    plugin = (doc.get("meta") or {}).get("plugin") or {}
    return str(plugin.get("data_parser") or plugin.get("type") or "unknown")


_GRES_ITEM = re.compile(
    r"^(?P<name>[^:()]+)(?::(?P<type>\(null\)|[^:()]+))?(?::(?P<count>\d+[KMGTP]?))?(?:\(.*\))?$"
)
_SUFFIX = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside parentheses ("gpu:a100:2(IDX:0,2),gpu:v100:1")."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_gres_gpus(text: str | None) -> dict[str, int]:
    """GPUs by model from a GRES string: `gpu:a100:2(S:0-1)`, `gpu:2`, `gpu:a100:0(IDX:N/A)`, `gpu:0`.

    Untyped GPUs count under "gpu"; other GRES (mps, shard, ...) and `(null)`/`N/A` are ignored.
    """
    out: dict[str, int] = {}
    if not text or text in ("(null)", "N/A"):
        return out
    for item in _split_top_level(text):
        m = _GRES_ITEM.match(item)
        if not m or m.group("name") != "gpu":
            continue
        kind, count = m.group("type"), m.group("count")
        if count is None and kind is not None and kind[0].isdigit():
            kind, count = None, kind  # "gpu:2": the second field is the count
        model = "gpu" if kind in (None, "(null)") else kind
        n = 1 if count is None else int(count.rstrip("KMGTP")) * _SUFFIX.get(count[-1], 1)
        out[model] = out.get(model, 0) + n
    return out


def _scaled(gpus: Mapping[str, int], count: int) -> dict[str, int]:
    return {k: v * count for k, v in gpus.items()}


# --- node sources ---
def _node_record(node: Mapping[str, Any], states: frozenset[str]) -> NodeGroup:
    cpus = _int(node.get("cpus"))
    alloc_cpus = min(cpus, _int(node.get("alloc_cpus")))
    memory = _int(node.get("real_memory"))
    return NodeGroup(
        names=(str(node["name"]),),
        partitions=tuple(str(p) for p in node.get("partitions") or []),
        states=states,
        count=1,
        cpus=cpus,
        alloc_cpus=alloc_cpus,
        memory_mib=memory,
        alloc_memory_mib=min(memory, _int(node.get("alloc_memory"))),
        gpus=parse_gres_gpus(node.get("gres")),
        gpus_used=parse_gres_gpus(node.get("gres_used")),
        idle_nodes=1 if alloc_cpus == 0 and "IDLE" in states else 0,
    )


def parse_nodes_v0038(doc: Mapping[str, Any]) -> NodesReading:
    """slurmrestd v0.0.38 `/nodes`, or 22.05's `sinfo --json` (the same node list)."""
    nodes = doc.get("nodes")
    if not isinstance(nodes, list):
        raise SlurmParseError("answer has no 'nodes' list")
    try:
        groups = tuple(_node_record(n, _states(n.get("state"), n.get("state_flags"))) for n in nodes)
    except (KeyError, TypeError, ValueError) as e:
        raise SlurmParseError(f"unexpected v0.0.38 node record: {e!r}") from e
    return NodesReading(slurm_release(doc), data_parser(doc), groups)


def parse_nodes_v0040(doc: Mapping[str, Any]) -> NodesReading:
    """slurmrestd v0.0.40-v0.0.45 `/nodes` (and 24.11's and 26.05's `scontrol show nodes --json`)."""
    nodes = doc.get("nodes")
    if not isinstance(nodes, list):
        raise SlurmParseError("answer has no 'nodes' list")
    try:
        groups = tuple(_node_record(n, _states(n.get("state"))) for n in nodes)
    except (KeyError, TypeError, ValueError) as e:
        raise SlurmParseError(f"unexpected v0.0.40+ node record: {e!r}") from e
    return NodesReading(slurm_release(doc), data_parser(doc), groups)


def _sinfo_group(entry: Mapping[str, Any]) -> tuple[NodeGroup, PartitionInfo]:
    nodes = entry.get("nodes") or {}
    count = _int(nodes.get("total"))
    cpus = entry.get("cpus") or {}
    memory = entry.get("memory") or {}
    per_node = _int(memory.get("minimum"))  # min == max for alike nodes; min is the safe side otherwise
    gres = entry.get("gres") or {}
    total_cpus = _int(cpus.get("total"))
    group = NodeGroup(
        names=tuple(str(n) for n in nodes.get("nodes") or []),
        partitions=(str(entry["partition"]["name"]),),
        states=_states((entry.get("node") or {}).get("state")),
        count=count,
        cpus=total_cpus,
        alloc_cpus=min(total_cpus, _int(cpus.get("allocated"))),
        memory_mib=per_node * count,
        alloc_memory_mib=min(per_node * count, _int(memory.get("allocated"))),
        gpus=_scaled(parse_gres_gpus(gres.get("total")), count),
        gpus_used=_scaled(parse_gres_gpus(gres.get("used")), count),
        idle_nodes=_int(nodes.get("idle")),
    )
    return group, parse_partition_v0040(entry["partition"])


def parse_sinfo_json(doc: Mapping[str, Any]) -> NodesReading:
    """`sinfo --json` of 22.05 (a node list, no partitions) or 24.11 (groups carrying their partition)."""
    if isinstance(doc.get("nodes"), list):
        return parse_nodes_v0038(doc)
    entries = doc.get("sinfo")
    if not isinstance(entries, list):
        raise SlurmParseError("sinfo --json printed neither 'nodes' nor 'sinfo'")
    try:
        pairs = [_sinfo_group(e) for e in entries]
    except (KeyError, TypeError, ValueError) as e:
        raise SlurmParseError(f"unexpected sinfo --json group: {e!r}") from e
    partitions = {p.name: p for _, p in pairs}
    return NodesReading(
        slurm_release(doc),
        data_parser(doc),
        tuple(g for g, _ in pairs),
        tuple(partitions[k] for k in sorted(partitions)),
    )


# --- partition sources ---
def parse_partition_v0038(p: Mapping[str, Any]) -> PartitionInfo:
    return PartitionInfo(
        str(p["name"]), _partition_state(p.get("state")), _max_minutes(p.get("max_time_limit"))
    )


def parse_partition_v0040(p: Mapping[str, Any]) -> PartitionInfo:
    return PartitionInfo(
        str(p["name"]),
        _partition_state((p.get("partition") or {}).get("state")),
        _max_minutes((p.get("maximums") or {}).get("time")),
    )


def parse_partitions(doc: Mapping[str, Any]) -> tuple[PartitionInfo, ...]:
    """slurmrestd `/partitions` of any version we speak (v0.0.38 flat, v0.0.40+ nested)."""
    parts = doc.get("partitions")
    if not isinstance(parts, list):
        raise SlurmParseError("answer has no 'partitions' list")
    try:
        return tuple(
            parse_partition_v0040(p) if isinstance(p.get("partition"), Mapping) else parse_partition_v0038(p)
            for p in parts
        )
    except (KeyError, TypeError, ValueError) as e:
        raise SlurmParseError(f"unexpected partition record: {e!r}") from e


def parse_scontrol_partitions(text: str) -> tuple[PartitionInfo, ...]:
    """`scontrol show partition --oneliner` (22.05 has no --json): one `Key=Value ...` line per partition."""
    out = []
    for line in text.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "PartitionName" not in fields:
            continue
        out.append(
            PartitionInfo(
                fields["PartitionName"],
                _partition_state(fields.get("State", "")),
                _minutes(fields.get("MaxTime")),
            )
        )
    return tuple(out)


# --- the snapshot ---
def _add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


@dataclass
class _Sum:
    nodes: int = 0
    cpus: int = 0
    memory_mib: int = 0
    gpus: dict[str, int] = field(default_factory=dict)

    def freeze(self) -> Resources:
        return Resources(self.nodes, self.cpus, self.memory_mib, dict(sorted(self.gpus.items())))


def count_jobs(jobs: Iterable[SlurmJob]) -> dict[str, tuple[int, int]]:
    """(running, pending) jobs per partition; a job pending in "a,b" counts in both."""
    out: dict[str, tuple[int, int]] = {}
    for job in jobs:
        if job.state not in (JobState.RUNNING, JobState.PENDING):
            continue
        for name in filter(None, job.partition.split(",")):
            running, pending = out.get(name, (0, 0))
            if job.state == JobState.RUNNING:
                out[name] = (running + 1, pending)
            else:
                out[name] = (running, pending + 1)
    return out


def build_capacity_snapshot(
    reading: NodesReading,
    partitions: Iterable[PartitionInfo],
    jobs: Iterable[SlurmJob],
) -> CapacitySnapshot:
    """Per-partition totals and idle capacity of nodes in service, with limits and job counts.

    Partitions are those the partition listing names plus any a node names; one without an entry in
    the listing is taken as UP with no time limit.
    """
    infos = {p.name: p for p in (*partitions, *reading.partitions)}
    totals: dict[str, _Sum] = {name: _Sum() for name in infos}
    idles: dict[str, _Sum] = {name: _Sum() for name in infos}
    for group in reading.nodes:
        for name in group.partitions:
            acc = totals.setdefault(name, _Sum())
            idle = idles.setdefault(name, _Sum())
            if not group.in_service:
                continue
            acc.nodes += group.count
            acc.cpus += group.cpus
            acc.memory_mib += group.memory_mib
            acc.gpus = _add(acc.gpus, group.gpus)
            idle.nodes += group.idle_nodes
            idle.cpus += group.cpus - group.alloc_cpus
            idle.memory_mib += group.memory_mib - group.alloc_memory_mib
            free = {m: max(0, n - group.gpus_used.get(m, 0)) for m, n in group.gpus.items()}
            idle.gpus = _add(idle.gpus, free)
    job_counts = count_jobs(jobs)
    out = []
    for name in sorted(totals):
        info = infos.get(name) or PartitionInfo(name, PartitionState.UP, None)
        running, pending = job_counts.get(name, (0, 0))
        total = totals[name].freeze()
        spare = idles[name].freeze()
        out.append(
            PartitionSnapshot(
                name=name,
                state=info.state,
                total=total,
                idle=Resources(
                    spare.nodes, spare.cpus, spare.memory_mib, {m: spare.gpus.get(m, 0) for m in total.gpus}
                ),
                max_time_minutes=info.max_time_minutes,
                running_jobs=running,
                pending_jobs=pending,
            )
        )
    return CapacitySnapshot(reading.slurm_version, reading.source, tuple(out))


def partitions_known(reading: NodesReading, partitions: Iterable[PartitionInfo]) -> bool:
    """Whether every partition a node names is in `partitions` (else the listing is stale)."""
    known = {p.name for p in partitions}
    return all(name in known for g in reading.nodes for name in g.partitions)
