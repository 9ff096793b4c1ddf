"""A StepAllocation on Slurm (pure): one batch job on one node that runs the allocation's agent, and the
script of each step it runs as a job step (`srun --exact`, in the step's container).

The job holds `slots` x the slot's CPUs, memory and GPUs on one node, for the allocation's runtime; it
carries `--comment=converged:<allocation uid>`, so the controller adopts it after a crash instead of
submitting it again, exactly as for a step's own job. Each step is a job step named after its rule and
job id, with its own time limit, so `sacct -j <job>` shows every step the allocation ran.
"""

from __future__ import annotations

import shlex

from converged_bridge.allocation.agent import AgentSpec, SrunLaunch, build_agent_script, build_step_header
from converged_bridge.allocation.paths import AllocationPaths
from converged_bridge.allocation.warm import build_warm_command
from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.errors import InvalidStep
from converged_bridge.slurm.batch_script import (
    JOB_NAME_MAX,
    BatchOptions,
    build_batch_options,
    build_job_name,
    build_log_path,
    build_sbatch_directives,
    build_sbatch_log_path,
    build_step_body,
)
from converged_bridge.slurm.container import LaunchRequest, build_container_launch
from converged_bridge.slurm.jobs import COMMENT_PREFIX
from converged_bridge.slurm.transport import Submission


def build_allocation_options(
    alloc: StepAllocation, cluster: SlurmClusterSpec, *, log_dir: str
) -> BatchOptions:
    """The sbatch options of the allocation's job: slots x one slot's resources on one node."""
    spec = alloc.spec
    slot = spec.resources
    uid = alloc.metadata.uid or ""
    placement = spec.slurm
    defaults = cluster.defaults

    def placed(name: str) -> str | None:
        own = getattr(placement, name) if placement is not None else None
        return own if own is not None else (getattr(defaults, name) if defaults is not None else None)

    gres = None
    if slot.gpus:
        count = slot.gpus * spec.slots
        gres = f"gpu:{slot.gpu_model}:{count}" if slot.gpu_model else f"gpu:{count}"
    name = "".join(c if c.isalnum() or c in "_.-" else "_" for c in f"alloc-{alloc.metadata.name}")
    log_path = build_sbatch_log_path(build_log_path(log_dir, uid), None)
    return BatchOptions(
        job_name=name[:JOB_NAME_MAX],
        comment=COMMENT_PREFIX + uid,
        output=log_path,
        error=log_path,
        nodes=1,
        ntasks=spec.slots,
        cpus_per_task=slot.cpus,
        mem_mib=None if slot.mem_mib is None else slot.mem_mib * spec.slots,
        time_minutes=spec.runtime_minutes,
        gres=gres,
        partition=placed("partition"),
        account=placed("account"),
        qos=placed("qos"),
    )


def build_allocation_submission(
    alloc: StepAllocation, cluster: SlurmClusterSpec, paths: AllocationPaths, *, user: str
) -> Submission:
    """The batch job that runs the allocation's agent, on `cluster` as `user`."""
    spec = alloc.spec
    options = build_allocation_options(alloc, cluster, log_dir=paths.logs)
    slot = spec.resources
    agent = build_agent_script(
        AgentSpec(
            allocation=f"{alloc.metadata.namespace}/{alloc.metadata.name}",
            paths=paths,
            slots=spec.slots,
            idle_seconds=spec.idle_seconds,
            launch=SrunLaunch(cpus=slot.cpus, mem_mib=slot.mem_mib, gpus=slot.gpus, gpu_model=slot.gpu_model),
            warm=spec.warm,
        )
    )
    shebang, _, body = agent.partition("\n")
    header = [shebang, *build_sbatch_directives(options)]
    script = "\n".join(header) + "\n" + body
    return Submission(script=script, options=options, working_dir=spec.working_dir, user=user)


def build_grouped_step_script(
    step: WorkflowStep, cluster: SlurmClusterSpec, *, uid: str, log_dir: str
) -> str:
    """What the agent runs for `step` in a job step: its working directory, environment and container,
    as its own batch job would (every user string quoted; see `slurm.batch_script`)."""
    if any(e.value_from is not None for e in step.spec.env):
        raise InvalidStep("spec.env", "secret variables are not handed to an allocation")
    options = build_batch_options(step, cluster, uid=uid, log_dir=log_dir)
    body = build_step_body(step, cluster, options)
    header = ["#!/bin/bash", build_step_header(build_job_name(step), step.spec.resources.runtime_minutes)]
    return "\n".join([*header, f"# WorkflowStep uid {uid}, in a StepAllocation.", *body]) + "\n"


def build_warm_launcher(alloc: StepAllocation, cluster: SlurmClusterSpec, paths: AllocationPaths) -> str:
    """The spool's `warm` script: the allocation's warm snakemake in its image, under the cluster's
    container runtime (the agent starts it as a job step of its own)."""
    launch = build_container_launch(
        LaunchRequest(
            runtime=cluster.container_runtime,
            image=alloc.spec.image,
            command=build_warm_command(paths.state, paths.spool, paths.logs),
            working_dir=alloc.spec.working_dir,
            bind_paths=cluster.bind_paths,
            gpus=0,
            env_names=[],
        )
    )
    return (
        "\n".join(["#!/bin/bash", "set -eu", *launch.setup_lines, "exec " + shlex.join(launch.argv)]) + "\n"
    )
