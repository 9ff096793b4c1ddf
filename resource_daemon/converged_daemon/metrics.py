"""Prometheus metrics of the daemon, on a registry of its own (no module globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DaemonMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.leader = Gauge("converged_daemon_leader", "1 while this process leads", registry=r)
        self.cycles = Counter("converged_daemon_cycles", "Mirror cycles run", registry=r)
        self.cycle_seconds = Histogram(
            "converged_daemon_cycle_seconds",
            "Wall time of one mirror cycle (all SlurmClusters)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.plan_cpu_seconds = Histogram(
            "converged_daemon_plan_cpu_seconds",
            "CPU time of parse-free planning for one SlurmCluster",
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1),
            registry=r,
        )
        self.writes = Counter(
            "converged_daemon_kube_writes", "Kubernetes writes by kind of action", ["action"], registry=r
        )
        self.write_errors = Counter(
            "converged_daemon_kube_write_errors", "Failed Kubernetes writes", registry=r
        )
        self.heartbeats = Counter("converged_daemon_node_heartbeats", "Node Lease renewals", registry=r)
        self.slurm_reachable = Gauge(
            "converged_daemon_slurm_reachable",
            "1 when the last Slurm query answered",
            ["cluster"],
            registry=r,
        )
        self.partition_cpus = Gauge(
            "converged_daemon_partition_cpus",
            "CPUs of a Slurm partition in service (kind=total) and idle",
            ["cluster", "partition", "kind"],
            registry=r,
        )
        self.partition_gpus = Gauge(
            "converged_daemon_partition_gpus",
            "GPUs of a Slurm partition in service (kind=total) and idle",
            ["cluster", "partition", "kind"],
            registry=r,
        )
        self.pending_jobs = Gauge(
            "converged_daemon_partition_pending_jobs",
            "Pending Slurm jobs",
            ["cluster", "partition"],
            registry=r,
        )
