"""The sbatch script that runs a WorkflowStep on Slurm. Pure: no I/O, no clock.

Safety rules, because every string here may come from a hostile workflow:
- `#SBATCH` directive values cannot be quoted (sbatch reads them before any shell does), so each one is
  checked against a safe charset and a newline is always rejected; job names are sanitized instead.
- everything in the script body that comes from the step goes through `shlex.quote`; environment names
  are checked to be shell names (C identifiers) because they cannot be quoted.
- the job is submitted with `--export=NONE`: nothing of the submitter's environment (the controller holds
  tokens) leaks into the job. Slurm then sets SLURM_EXPORT_ENV=NONE in the job, which an inner `srun`
  obeys, so the MPI launcher runs `srun --export=ALL` to hand the step's environment on.

MPI steps (more than one task or node): the step's command runs once, on the first node, as a rule's
command does in any Slurm job, and launches its ranks itself with `$CONVERGED_MPIRUN` (the same variable
an MPIJob's launcher gets): `srun --mpi=pmix --export=ALL --ntasks=<tasks> <runtime> exec ... <image>`,
each rank in the step's image on its node (the hybrid model). Every step's container gets the job's
SLURM_* variables (container.py), and srun comes from the SlurmCluster's bindPaths (the host's Slurm
client, munge socket and passwd bound into the container: docs/admin.md).

Secrets never appear in the script. A step's `valueFrom.secretKeyRef` variables are read from
`secret_env_file`, a file the caller writes beside the script with mode 0600 from
`build_secret_env_file(resolved_values)` and removes when the step ends; the script sources it with
`set -a` and fails early, naming the variable, if one is missing.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from converged_bridge.api.meta import UID_PATTERN
from converged_bridge.api.slurmcluster import ContainerRuntime, SlurmClusterSpec
from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.errors import InvalidStep
from converged_bridge.handover.build import build_host_finish, build_host_setup
from converged_bridge.slurm.container import ContainerLaunch, LaunchRequest, build_container_launch
from converged_bridge.slurm.jobs import COMMENT_PREFIX

JOB_NAME_MAX = 100
_SLURM_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UID = re.compile(UID_PATTERN)
# A log directory ends up in --output/--error, unquotable; '%' would start a Slurm filename pattern.
_LOG_DIR = re.compile(r"/[A-Za-z0-9_./+,:=@~-]*")
_UNSAFE_IN_JOB_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class BatchOptions:
    """The sbatch options of a step, all values checked; `build_sbatch_directives` renders them."""

    job_name: str
    comment: str
    output: str
    error: str
    nodes: int
    ntasks: int
    cpus_per_task: int
    mem_mib: int | None
    time_minutes: int | None
    gres: str | None
    partition: str | None
    account: str | None
    qos: str | None
    export: str = "NONE"


def build_job_name(step: WorkflowStep) -> str:
    """`<rule>-<jobId>` with every character outside [A-Za-z0-9_.-] replaced by '_', at most 100 chars."""
    suffix = f"-{_non_negative('spec.workflow.jobId', step.spec.workflow.job_id)}"
    rule = _UNSAFE_IN_JOB_NAME.sub("_", step.spec.workflow.rule) or "step"
    return rule[: JOB_NAME_MAX - len(suffix)] + suffix


def build_log_path(log_dir: str, uid: str) -> str:
    """Where the step's combined stdout and stderr go: `<log_dir>/converged-<uid>.log` (absolute)."""
    if not log_dir.startswith("/") or any(c in log_dir for c in "\n\r\0"):
        raise InvalidStep("log_dir", f"{log_dir!r} must be an absolute path on one line")
    return f"{log_dir.rstrip('/')}/converged-{_checked_uid(uid)}.log"


def build_sbatch_log_path(log_path: str, working_dir: str | None) -> str:
    """`log_path` as `#SBATCH --output` can take it, unquoted: itself when it holds only
    [A-Za-z0-9_./+,:=@~-] ('%' would start a Slurm filename pattern), else relative to the job's working
    directory when it lies there (a workflow directory named `test (with parenthese's)`, say: Slurm
    resolves a relative --output against the directory the job is submitted to run in)."""
    if _LOG_DIR.fullmatch(log_path):
        return log_path
    if working_dir is not None:
        path, base = PurePosixPath(log_path), PurePosixPath(working_dir)
        if path.is_relative_to(base):
            relative = str(path.relative_to(base))
            if _LOG_DIR.fullmatch(f"/{relative}"):
                return relative
    raise InvalidStep(
        "log_dir",
        f"{log_path!r} must be a path of [A-Za-z0-9_./+,:=@~-] (#SBATCH --output cannot be quoted) "
        "or lie inside the step's working directory",
    )


def build_batch_options(
    step: WorkflowStep, cluster: SlurmClusterSpec, *, uid: str, log_dir: str
) -> BatchOptions:
    """The sbatch options for `step` on `cluster`; placement falls back to the cluster's defaults."""
    resources = step.spec.resources
    placement = step.spec.slurm
    defaults = cluster.defaults
    log_path = build_sbatch_log_path(build_log_path(log_dir, uid), step.spec.working_dir)

    def placed(name: str) -> str | None:
        own = getattr(placement, name) if placement is not None else None
        if own is not None:
            return _slurm_name(f"spec.slurm.{name}", own)
        fallback = getattr(defaults, name) if defaults is not None else None
        return None if fallback is None else _slurm_name(f"SlurmCluster spec.defaults.{name}", fallback)

    gpus = _non_negative("spec.resources.gpus", resources.gpus)
    gres = None
    if gpus > 0:
        model = resources.gpu_model
        gres = f"gpu:{_slurm_name('spec.resources.gpuModel', model)}:{gpus}" if model else f"gpu:{gpus}"
    return BatchOptions(
        job_name=build_job_name(step),
        comment=COMMENT_PREFIX + _checked_uid(uid),
        output=log_path,
        error=log_path,
        nodes=_positive("spec.resources.nodes", resources.nodes),
        ntasks=_positive("spec.resources.tasks", resources.tasks),
        cpus_per_task=_positive("spec.resources.cpus", resources.cpus),
        mem_mib=_optional_positive("spec.resources.memMiB", resources.mem_mib),
        time_minutes=_optional_positive("spec.resources.runtimeMinutes", resources.runtime_minutes),
        gres=gres,
        partition=placed("partition"),
        account=placed("account"),
        qos=placed("qos"),
    )


def build_sbatch_directives(options: BatchOptions) -> list[str]:
    """The `#SBATCH` lines for `options`, in a fixed order."""
    pairs: list[tuple[str, object | None]] = [
        ("job-name", options.job_name),
        ("comment", options.comment),
        ("output", options.output),
        ("error", options.error),
        ("export", options.export),
        ("nodes", options.nodes),
        ("ntasks", options.ntasks),
        ("cpus-per-task", options.cpus_per_task),
        ("mem", None if options.mem_mib is None else f"{options.mem_mib}M"),
        ("time", options.time_minutes),
        ("gres", options.gres),
        ("partition", options.partition),
        ("account", options.account),
        ("qos", options.qos),
    ]
    lines = [f"#SBATCH --{flag}={value}" for flag, value in pairs if value is not None]
    for line in lines:
        if any(c.isspace() for c in line.removeprefix("#SBATCH ")):
            raise InvalidStep("sbatch directive", f"{line!r} contains whitespace")
    return lines


def build_secret_env_file(values: Mapping[str, str]) -> str:
    """The content of the secret env file: one `NAME=<quoted value>` line per variable, sourced by sh."""
    lines = []
    for name, value in sorted(values.items()):
        _env_name("secret environment variable", name)
        lines.append(f"{name}={shlex.quote(_no_nul(f'secret {name}', value))}\n")
    return "".join(lines)


def build_batch_script(
    step: WorkflowStep,
    cluster: SlurmClusterSpec,
    *,
    uid: str,
    log_dir: str,
    secret_env_file: str | None = None,
) -> str:
    """The sbatch script running `step` on `cluster`; `uid` is the step's Kubernetes UID.

    The UID goes into `--comment=converged:<uid>`, the marker that lets the controller adopt a job it
    submitted before a crash instead of submitting it twice. `secret_env_file` is required exactly when
    the step has secret environment variables (see the module docstring).
    """
    options = build_batch_options(step, cluster, uid=uid, log_dir=log_dir)
    body = build_step_body(step, cluster, options, secret_env_file)
    header = [
        "#!/bin/bash",
        *build_sbatch_directives(options),
        f"# Generated by converged for WorkflowStep uid {options.comment.removeprefix(COMMENT_PREFIX)}.",
    ]
    return "\n".join(header + body) + "\n"


def build_step_body(
    step: WorkflowStep, cluster: SlurmClusterSpec, options: BatchOptions, secret_env_file: str | None = None
) -> list[str]:
    """The shell lines that run `step` on `cluster` (in its container), inside a job or a job step:
    working directory, environment, the container's set-up, and the `exec` of its command."""
    spec = step.spec
    plain = [(e.name, e.value) for e in spec.env if e.value is not None]
    secret_names = [e.name for e in spec.env if e.value_from is not None]
    for index, entry in enumerate(spec.env):
        _env_name(f"spec.env[{index}].name", entry.name)
    if not spec.command:
        raise InvalidStep("spec.command", "must hold at least the program to run")
    for index, arg in enumerate(spec.command):
        _no_nul(f"spec.command[{index}]", arg)
    if spec.command[0].startswith("-"):
        raise InvalidStep("spec.command[0]", "must not start with '-' (it would be read as an option)")

    launch = build_container_launch(
        LaunchRequest(
            runtime=cluster.container_runtime,
            image=spec.image,
            command=spec.command,
            working_dir=spec.working_dir,
            bind_paths=cluster.bind_paths,
            gpus=spec.resources.gpus,
            env_names=[name for name, _ in plain] + secret_names,
        )
    )
    body = ["set -euo pipefail"]
    if spec.working_dir is not None:
        body.append(f"cd -- {shlex.quote(_no_nul('spec.workingDir', spec.working_dir))}")
    body += [f"export {name}={shlex.quote(_no_nul(f'spec.env {name}', value))}" for name, value in plain]
    body += _secret_lines(secret_names, secret_env_file)
    body += launch.setup_lines
    if options.ntasks > 1 or options.nodes > 1:
        if not cluster.mpi:
            raise InvalidStep(
                "spec.resources",
                "this SlurmCluster runs no MPI steps (mpi: false); send tasks or nodes > 1 to a cluster "
                "that does, or to Kubernetes (operator mpijob)",
            )
        if cluster.container_runtime == ContainerRuntime.PODMAN:
            raise InvalidStep("spec.resources", "MPI steps (tasks or nodes > 1) cannot run under podman")
        body += _mpi_lines(launch, options)
    if spec.rule_images:
        return body + _handover_lines(cluster, options, launch)
    body.append("exec " + shlex.join(launch.argv))
    return body


def _handover_lines(cluster: SlurmClusterSpec, options: BatchOptions, launch: ContainerLaunch) -> list[str]:
    """The driver (the step's snakemake in its image) started beside a runner that runs the rule's
    commands in the rule's own images with the node's Apptainer (converged_bridge.handover)."""
    if cluster.container_runtime not in (ContainerRuntime.APPTAINER, ContainerRuntime.SINGULARITY):
        raise InvalidStep(
            "spec.ruleImages",
            f"the rule's own image needs Apptainer or Singularity on the Slurm nodes; this SlurmCluster "
            f"runs {cluster.container_runtime.value}",
        )
    if options.ntasks > 1 or options.nodes > 1:
        raise InvalidStep(
            "spec.ruleImages", "a step in its rule's own image runs one task on one node (MPI steps: not yet)"
        )
    return build_host_setup(cluster.container_runtime.value) + build_host_finish(launch.argv)


MPIRUN_ENV = "CONVERGED_MPIRUN"
PMI = "pmix"  # Debian's OpenMPI speaks PMIx only (no PMI-1/2 client); Slurm's mpi_pmix serves it


def _mpi_lines(launch: ContainerLaunch, options: BatchOptions) -> list[str]:
    """Export CONVERGED_MPIRUN (into the container when there is one) and the job's SLURM_* variables
    with it, so the step's command can start its ranks with srun from inside its container."""
    srun = [
        "srun",
        f"--mpi={PMI}",
        # the step's environment to every rank; PMIx's shared-memory store (gds ds12) locks files in
        # slurmstepd's directory, which a container does not see ("PMIX ERROR ... gds_ds12_lock"): the
        # hash store keeps the job's data in each process instead
        "--export=ALL,PMIX_MCA_gds=hash",
        # every node of the allocation: srun alone packs the tasks onto as few nodes as hold them
        f"--nodes={options.nodes}",
        f"--ntasks={options.ntasks}",
        # Slurm 22.05's srun does not inherit --cpus-per-task from the allocation; pass it explicitly
        f"--cpus-per-task={options.cpus_per_task}",
    ]
    name = f"{launch.env_prefix}{MPIRUN_ENV}"
    if not launch.rank_argv:  # no container: the ranks run the program itself
        return [f"export {name}={shlex.quote(shlex.join(srun))}"]
    runtime, *rest = launch.rank_argv
    for word in rest:  # the value is word-split where it is used: no word may hold a space
        if any(c.isspace() for c in word):
            raise InvalidStep("spec", f"an MPI step's image and paths must not contain whitespace: {word!r}")
    lines = [
        # the runtime as the host knows it: srun runs inside the container, slurmstepd on the host
        f"converged_runtime=$(command -v {shlex.quote(runtime)})",
        f'export {name}="{" ".join(srun)} $converged_runtime "{shlex.quote(" ".join(rest))}',
    ]
    return lines  # the allocation's SLURM_* reach a --cleanenv container with every other step's


def _secret_lines(names: list[str], secret_env_file: str | None) -> list[str]:
    if not names:
        return []
    if secret_env_file is None:
        raise InvalidStep("spec.env", f"secret variables {', '.join(names)} need a secret_env_file")
    path = shlex.quote(_no_nul("secret_env_file", secret_env_file))
    lines = ["set -a", f". {path}", "set +a"]
    lines += [f': "${{{name}?is missing from the secret env file}}"' for name in names]
    return lines


def _checked_uid(uid: str) -> str:
    if not _UID.fullmatch(uid):
        raise InvalidStep("metadata.uid", f"{uid!r} is not a Kubernetes UID (lower-case RFC 4122 UUID)")
    return uid


def _slurm_name(field: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise InvalidStep(field, "must not contain a newline (sbatch directives cannot be quoted)")
    if not _SLURM_NAME.fullmatch(value):
        raise InvalidStep(field, f"{value!r} may only contain [A-Za-z0-9_.-]")
    return value


def _env_name(field: str, name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise InvalidStep(
            field, f"{name!r} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
        )
    return name


def _no_nul(field: str, value: str) -> str:
    if "\0" in value:
        raise InvalidStep(field, "must not contain a NUL character")
    return value


def _positive(field: str, value: int) -> int:
    if type(value) is not int or value < 1:
        raise InvalidStep(field, f"{value!r} must be an integer >= 1")
    return value


def _optional_positive(field: str, value: int | None) -> int | None:
    return None if value is None else _positive(field, value)


def _non_negative(field: str, value: int) -> int:
    if type(value) is not int or value < 0:
        raise InvalidStep(field, f"{value!r} must be an integer >= 0")
    return value
