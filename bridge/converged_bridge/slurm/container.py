"""How a step's command runs under a SlurmCluster's container runtime: argv and environment forwarding.

Pure: returns unquoted argv and shell lines; the batch script quotes the argv. The environment reaches the
container by name only, never by value on a command line (values would show in `ps`):
- apptainer / singularity run with --cleanenv and receive each variable as APPTAINERENV_<NAME> /
  SINGULARITYENV_<NAME>, the documented way through --cleanenv, and with --no-eval: without it Apptainer
  evaluates those values in a shell inside the container (`$(x)` would run, `$HOME` expand); the
  job's SLURM_* variables are handed in the same way (a Slurm step expects them);
- podman gets `--env NAME` (no value: podman copies it from its own environment);
- charliecloud's ch-run and the bare runtime inherit the job's environment, already clean because the job
  is submitted with --export=NONE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from converged_bridge.api.slurmcluster import ContainerRuntime
from converged_bridge.errors import InvalidStep

_ENV_PREFIX = {
    ContainerRuntime.APPTAINER: "APPTAINERENV_",
    ContainerRuntime.SINGULARITY: "SINGULARITYENV_",
}


_JOB_VARIABLES = "SLURM*|CUDA_VISIBLE_DEVICES|GPU_DEVICE_ORDINAL|ROCR_VISIBLE_DEVICES"


@dataclass(frozen=True)
class ContainerLaunch:
    """Shell lines to run before the command (already safe) and the argv that runs it (to be quoted).

    `rank_argv` starts one MPI rank in the same image: what `srun` runs on each node of the allocation
    (the hybrid model). Its first word is the runtime, which the batch script resolves to an absolute
    path on the host (srun is called from inside the container, slurmstepd executes on the host).
    `env_prefix` is how a variable reaches the container ("" when the job's environment is inherited)."""

    setup_lines: tuple[str, ...]
    argv: tuple[str, ...]
    rank_argv: tuple[str, ...] = ()
    env_prefix: str = ""


@dataclass(frozen=True)
class LaunchRequest:
    """What a container runtime needs to know about a step. env_names must be valid shell names."""

    runtime: ContainerRuntime
    image: str | None
    command: Sequence[str]
    working_dir: str | None
    bind_paths: Sequence[str]
    gpus: int
    env_names: Sequence[str]


def build_container_launch(request: LaunchRequest) -> ContainerLaunch:
    """The argv and environment setup that run `request.command` under `request.runtime`."""
    if request.runtime == ContainerRuntime.NONE:
        if request.image is not None:
            raise InvalidStep(
                "spec.image",
                "the SlurmCluster runs steps without a container (containerRuntime none); "
                "drop the image or target a cluster with a container runtime",
            )
        return ContainerLaunch(setup_lines=(), argv=tuple(request.command), rank_argv=())
    image = _checked_image(request.runtime, request.image)
    binds = _bind_paths(request)
    if request.runtime in _ENV_PREFIX:
        return _apptainer_launch(request, image, binds)
    if request.runtime == ContainerRuntime.CHARLIECLOUD:
        return _charliecloud_launch(request, image, binds)
    return _podman_launch(request, image, binds)


def _apptainer_launch(request: LaunchRequest, image: str, binds: Sequence[str]) -> ContainerLaunch:
    prefix = _ENV_PREFIX[request.runtime]
    options = []
    if request.gpus > 0:
        options.append("--nv")
    for path in binds:
        options += ["--bind", path]
    pwd = ["--pwd", request.working_dir] if request.working_dir is not None else []
    # --quiet: no INFO lines (missing optional FUSE helpers) in the step's log and logTail
    argv = [request.runtime.value, "--quiet", "exec", "--no-eval", "--cleanenv", *options, *pwd]
    # a rank keeps the environment srun gives it (PMIX_*, SLURM_*): no --cleanenv there. It also
    # inherits APPTAINER_BIND from the step's container, so Apptainer warns that each --bind is there
    # already: --silent keeps those n-fold duplicates out of the log. No --pwd: a rank starts in the
    # directory its srun was called from, as the step's command chose it (`cd run && $CONVERGED_MPIRUN`).
    rank = (request.runtime.value, "--silent", "exec", "--no-eval", *options, image)
    setup = (
        *(f'export {prefix}{name}="${{{name}}}"' for name in request.env_names),
        # the job's own SLURM_* / SLURMD_* (job id, partition, node, allocation) and the GPUs Slurm bound
        # it to, as any Slurm job has them
        f'for v in $(compgen -e); do case $v in {_JOB_VARIABLES}) export "{prefix}$v=${{!v}}";; esac; done',
    )
    return ContainerLaunch(
        setup_lines=setup, argv=(*argv, image, *request.command), rank_argv=rank, env_prefix=prefix
    )


def _charliecloud_launch(request: LaunchRequest, image: str, binds: Sequence[str]) -> ContainerLaunch:
    argv = ["ch-run", *(f"--bind={path}" for path in binds)]
    rank = (*argv, image, "--")  # ch-run starts in the caller's directory: where the step's srun ran
    if request.working_dir is not None:
        argv.append(f"--cd={request.working_dir}")
    # ch-run refuses to start without $USER, which a job submitted with --export=NONE may lack.
    setup = ('export USER="${USER:-$(id -un)}"',)
    return ContainerLaunch(setup_lines=setup, argv=(*argv, image, "--", *request.command), rank_argv=rank)


def _podman_launch(request: LaunchRequest, image: str, binds: Sequence[str]) -> ContainerLaunch:
    argv = ["podman", "run", "--rm", "--network=host"]
    for name in request.env_names:
        argv += ["--env", name]
    for path in binds:
        argv += ["--volume", f"{path}:{path}"]
    if request.working_dir is not None:
        argv += ["--workdir", request.working_dir]
    if request.gpus > 0:
        argv += ["--device", "nvidia.com/gpu=all"]
    return ContainerLaunch(setup_lines=(), argv=(*argv, image, *request.command))


def _checked_image(runtime: ContainerRuntime, image: str | None) -> str:
    if image is None or image == "":
        raise InvalidStep("spec.image", f"containerRuntime {runtime.value} needs an image")
    if image.startswith("-"):
        raise InvalidStep("spec.image", "must not start with '-' (it would be read as an option)")
    return image


def _bind_paths(request: LaunchRequest) -> list[str]:
    """The cluster's bind paths, then the working directory unless one of them already holds it."""
    checked = [_checked_bind_path("SlurmCluster spec.bindPaths", path) for path in request.bind_paths]
    if request.working_dir is not None:
        working_dir = PurePosixPath(_checked_bind_path("spec.workingDir", request.working_dir))
        if not any(working_dir.is_relative_to(path) for path in checked):
            checked.append(request.working_dir)
    return list(dict.fromkeys(checked))


def _checked_bind_path(field: str, path: str) -> str:
    if not path.startswith("/"):
        raise InvalidStep(field, f"{path!r} is not an absolute path")
    if any(c in path for c in ":,\n\0"):
        raise InvalidStep(
            field, f"{path!r} cannot be bound into a container (contains ':', ',' or a newline)"
        )
    return path
