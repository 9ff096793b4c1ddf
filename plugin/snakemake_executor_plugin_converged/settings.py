"""`--converged-*` options of the executor (snakemake reads them from this dataclass)."""

# No `from __future__ import annotations` here: snakemake reads the settings fields' types at runtime.

from dataclasses import dataclass, field

from snakemake_interface_executor_plugins.settings import ExecutorSettingsBase

from converged_bridge.routing import Preference


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    """`--converged-<name>` options; set them in a profile for a site-wide default."""

    namespace: str | None = field(
        default=None,
        metadata={
            "help": "Kubernetes namespace of the run's WorkflowSteps (its SlurmCluster user mapping "
            "decides the Slurm user). Default: the namespace of the kubeconfig's current context.",
            "type": str,
        },
    )
    kubeconfig: str | None = field(
        default=None,
        metadata={
            "help": "Kubeconfig file. Default: $KUBECONFIG, ~/.kube/config, then in-cluster.",
            "type": str,
        },
    )
    default_backend: str = field(
        default="auto",
        metadata={
            "help": "Backend for rules without a converged_backend resource: slurm, kueue, or auto "
            "(the router picks the feasible side with the shortest expected wait).",
            "choices": [p.value for p in Preference],
            "type": str,
        },
    )
    slurm_cluster: str | None = field(
        default=None,
        metadata={
            "help": "SlurmCluster to submit to. Default: any SlurmCluster that maps the namespace.",
            "type": str,
        },
    )
    local_queue: str | None = field(
        default=None,
        metadata={
            "help": "Kueue LocalQueue (in the namespace) for Kubernetes steps; a rule's "
            "converged_local_queue resource overrides it. Default: any LocalQueue of the namespace.",
            "type": str,
        },
    )
    image: str | None = field(
        default=None,
        metadata={
            "help": "Container image the steps run in (it needs python3 and snakemake); a rule's "
            "converged_image resource overrides it. Required for Kubernetes steps; on Slurm it is "
            "run by the SlurmCluster's container runtime. Default: none (Slurm steps run on the host).",
            "type": str,
        },
    )
    slurm_image: str | None = field(
        default=None,
        metadata={
            "help": "The image for steps routed to Slurm, when the Slurm side names it differently "
            "(an Apptainer .sif file, docker://..., or with charliecloud an unpacked directory); a rule's "
            "converged_slurm_image or converged_image resource overrides it. Default: --converged-image.",
            "type": str,
        },
    )
    shared_paths: str | None = field(
        default=None,
        metadata={
            "help": "Embedded controller only: the shared filesystem (holding the workflow directory) in "
            "every Kubernetes step pod, comma-separated PATH[=CLAIM]: the namespace's PersistentVolumeClaim "
            "CLAIM (default converged-shared) mounted at PATH, the same path as on the Slurm nodes. "
            "A deployed controller has its own setting. Default: none.",
            "type": str,
        },
    )
    controller: str = field(
        default="deployed",
        metadata={
            "help": "deployed: a converged controller runs in the cluster. embedded: run the "
            "controller inside this snakemake process (no daemon needed; do not use both on one namespace).",
            "choices": ["deployed", "embedded"],
            "type": str,
        },
    )
    plan: bool = field(
        default=False,
        metadata={
            "help": "Print the plan (every job of the DAG with backend, target, reason, group and "
            "estimated start and end; the groups of consecutive steps by resource shape; the estimated "
            "makespan and CPU/memory/GPU-hours) and exit without running anything.",
        },
    )
    group_allocations: bool = field(
        default=False,
        metadata={
            "help": "Run the plan's groups (consecutive steps of one shape) each in one allocation that "
            "comes up when the group's first step is ready and goes down when none of its steps is left: one "
            "Slurm job running them as job steps, or one Kubernetes pod running them in turn. Every step "
            "keeps its own WorkflowStep. A rule opts in or out with the resource converged_group=yes|no.",
        },
    )
    right_size: bool = field(
        default=False,
        metadata={
            "help": "Request each step's time and memory from its rule's past runs (the 95th percentile "
            "plus half again and a minute; the recent peak memory, measured by a benchmark: file, plus half "
            "again), never more than the rule declares, once a rule has run twice with the same code. A "
            "step killed at a learnt request is run once more with the declared limits. Site default: "
            "ConfigMap key rightSize.",
        },
    )
    group_cold: bool = field(
        default=False,
        metadata={
            "help": "In an allocation, run each step with its own `python3 -m snakemake` (in its own "
            "container on Slurm). Default: steps that are exactly that command run as forks of one snakemake "
            "the allocation imported once, which saves ~1 s of CPU per step.",
        },
    )
    group_idle: int = field(
        default=300,
        metadata={
            "help": "Seconds an allocation stays up with nothing to run before it ends anyway (a backstop: "
            "it ends as soon as its group has no step left).",
            "type": int,
        },
    )
    poll_interval: float = field(
        default=2.0,
        metadata={
            "help": "Seconds between status checks (one LIST of the run's WorkflowSteps each) and, "
            "in embedded mode, between the controller's Slurm listings.",
            "type": float,
        },
    )
    capacity_refresh: float = field(
        default=30.0,
        metadata={
            "help": "Seconds the router reuses a capacity snapshot before reading it again.",
            "type": float,
        },
    )
    slurm_weight: float = field(
        default=1.0,
        metadata={"help": "Multiplier on Slurm's expected wait when routing automatically.", "type": float},
    )
    kueue_weight: float = field(
        default=1.0,
        metadata={"help": "Multiplier on Kueue's expected wait when routing automatically.", "type": float},
    )
    cancel_timeout: float = field(
        default=60.0,
        metadata={
            "help": "Seconds to wait, on cancel (Ctrl-C), for the run's steps and their backend jobs to go.",
            "type": float,
        },
    )
    keep_finished: int | None = field(
        default=None,
        metadata={
            "help": "Seconds the controller keeps this run's WorkflowSteps (its record: kubectl get wfs, "
            "kubectl converged report) after the run finished, then deletes them. Default: the "
            "controller's (7 days on a deployed converged-daemon).",
            "type": int,
        },
    )
    run_id: str | None = field(
        default=None,
        metadata={
            "help": "Run id labelling the WorkflowSteps (converged.dev/run). Default: random per run.",
            "type": str,
        },
    )

    def problems(self) -> list[str]:
        """Every problem with these settings at once."""
        out = [
            f"--converged-{name.replace('_', '-')} must be > 0"
            for name in (
                "poll_interval",
                "capacity_refresh",
                "cancel_timeout",
                "slurm_weight",
                "kueue_weight",
            )
            if getattr(self, name) <= 0
        ]
        if self.keep_finished is not None and not 0 <= self.keep_finished <= 31_536_000:
            out.append("--converged-keep-finished must be between 0 and 31536000 seconds (a year)")
        if not 1 <= self.group_idle <= 86400:
            out.append("--converged-group-idle must be within 1 and 86400 seconds")
        for name in ("image", "slurm_image"):
            value = getattr(self, name)
            if value is not None and (not value.strip() or value.startswith("-")):
                out.append(f"--converged-{name.replace('_', '-')} must be a container image reference")
        if self.shared_paths:
            if self.controller != "embedded":
                out.append(
                    "--converged-shared-paths is for the embedded controller "
                    "(a deployed controller mounts what its own --shared-paths names)"
                )
            from converged_bridge.backends.kueue.operators.shared import parse_shared_volumes

            try:
                parse_shared_volumes(self.shared_paths)
            except ValueError as e:
                out.append(f"--converged-shared-paths: {e}")
        return out
