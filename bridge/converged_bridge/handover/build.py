"""The text that runs a step in its rule's own image (pure): the runner loop, the driver's prelude and the
batch-script lines, for `shim.py`'s protocol (read that module's docstring first).

Why a hand-over and not the rule's image alone: most published tool images hold the tool and a shell, no
snakemake and often no Python, while a step is driven by the job's own snakemake (log:, benchmark:,
shadow:, temp files, group jobs, retries all live there). So the snakemake that drives a step always
comes from the site's step image, and only the commands snakemake would have run under Apptainer run in
the rule's image — by the real Apptainer on a Slurm node, in a sidecar container of the same pod on
Kubernetes. Every command is one request; the cost is that of a container start on Slurm (as snakemake's
own local run pays) and a few file operations on Kubernetes, where the sidecar is already running.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

# inside a pod: where the hand-over and the copied search paths are mounted
POD_HANDOVER = "/converged/handover"
POD_SEARCHPATHS = "/converged/searchpaths"
RULE_SEARCHPATHS = "/mnt/snakemake_searchpaths"  # where snakemake's script preamble looks for them
SHIM_END = "CONVERGED_SHIM_END"

# The runner: POSIX sh and `sleep`, `mv` only, so it runs in any image with a shell (dash, busybox ash,
# bash). $1: the hand-over directory, $2: its queue. It keeps the queue open for reading and writing (never
# EOF, never blocks on open), runs each request in the background (a group job's members may run side by
# side), and ends on TERM (the kubelet stops a sidecar so when the pod's step has ended; the batch script
# when its driver has). A request name is checked before it is used as a path.
RUNNER = r"""h=$1; q=$2
trap 'exit 0' TERM INT
until [ -p "$h/$q" ]; do sleep 0.1; done
exec 3<>"$h/$q"
while IFS= read -r id <&3; do
  case $id in
    req.[A-Za-z0-9_]*) ;;
    *) continue ;;
  esac
  case $id in *[!A-Za-z0-9_.]*) continue ;; esac
  (
    exec 3<&-
    sh "$h/$id/run.sh" </dev/null >"$h/$id/out" 2>"$h/$id/err"
    echo $? >"$h/$id/rc.part" && mv "$h/$id/rc.part" "$h/$id/rc"
  ) &
done
"""

# The driver's prelude in a pod: installs the shim as `apptainer` first on PATH, makes the queues, then
# becomes the step's command ("$@").
DRIVER_PRELUDE = r"""set -e
h=$CONVERGED_HANDOVER
mkdir -p "$h/bin"
printf '%s\n' "$CONVERGED_SHIM" >"$h/bin/apptainer"
chmod 0755 "$h/bin/apptainer"
for q in $CONVERGED_QUEUES; do [ -p "$h/$q" ] || mkfifo "$h/$q"; done
PATH="$h/bin:$PATH"
export PATH
unset CONVERGED_SHIM
exec "$@"
"""


def shim_source() -> str:
    """The text of the `apptainer` stand-in that runs in a step's driver container."""
    return resources.files(__package__).joinpath("shim.py").read_text(encoding="utf-8")


def queue_name(index: int) -> str:
    return f"queue-{index}"


@dataclass(frozen=True)
class PodHandover:
    """What a pod's driver container needs to hand its commands to the rule images' sidecars."""

    env: dict[str, str]  # the driver container's variables
    command: list[str]  # the driver container's argv, wrapping the step's command


def build_pod_handover(paths: Sequence[str], command: Sequence[str]) -> PodHandover:
    """For a pod with one sidecar per rule image (`paths[i]`, where snakemake looks for image i, served
    by `queue-<i>`)."""
    images = {path: queue_name(index) for index, path in enumerate(paths)}
    return PodHandover(
        env={
            "CONVERGED_HANDOVER": POD_HANDOVER,
            "CONVERGED_HANDOVER_MODE": "pod",
            "CONVERGED_SEARCHPATHS": POD_SEARCHPATHS,
            "CONVERGED_RULE_IMAGES": json.dumps(images, sort_keys=True),
            "CONVERGED_QUEUES": " ".join(images.values()),
            "CONVERGED_SHIM": shim_source(),
        },
        command=["/bin/sh", "-c", DRIVER_PRELUDE, "converged-driver", *command],
    )


def build_runner_command(index: int) -> list[str]:
    """The argv of the sidecar serving rule image `index`."""
    return ["/bin/sh", "-c", RUNNER, "converged-runner", POD_HANDOVER, queue_name(index)]


def build_host_setup(runtime: str) -> list[str]:
    """Batch-script lines (bash) before the driver starts: the hand-over directory on the node, the shim
    in it as `apptainer` (first on the driver's PATH), and the runner started in the background.
    `runtime` is `apptainer` or `singularity`: the driver receives CONVERGED_* through its `<RUNTIME>ENV_`
    variables and the directory through `<RUNTIME>_BIND`, so the caller adds no option for them."""
    prefix, bind = f"{runtime.upper()}ENV_", f"{runtime.upper()}_BIND"
    names = ("CONVERGED_HANDOVER", "CONVERGED_HANDOVER_MODE", "CONVERGED_SEARCHPATHS")
    return [
        'converged_handover=$(mktemp -d "${TMPDIR:-/tmp}/converged-handover.XXXXXX")',
        "trap 'rm -rf -- \"$converged_handover\"' EXIT",
        'mkdir -p "$converged_handover/bin" "$converged_handover/searchpaths"',
        'mkfifo "$converged_handover/queue"',
        f"cat >\"$converged_handover/bin/apptainer\" <<'{SHIM_END}'",
        *shim_source().rstrip("\n").split("\n"),
        SHIM_END,
        'chmod 0755 "$converged_handover/bin/apptainer"',
        'export CONVERGED_HANDOVER="$converged_handover" CONVERGED_HANDOVER_MODE=host',
        'export CONVERGED_SEARCHPATHS="$converged_handover/searchpaths"',
        *(f'export {prefix}{name}="${{{name}}}"' for name in names),
        f'export {prefix}PREPEND_PATH="$converged_handover/bin"',
        f'export {bind}="${{{bind}:+${bind},}}$converged_handover"',
        # the runner runs the real runtime, as the node knows it
        f"converged_runtime=$(command -v {shlex.quote(runtime)})",
        "export converged_runtime",
        f'sh -c {shlex.quote(RUNNER)} converged-runner "$converged_handover" queue &',
        "converged_runner=$!",
    ]


def build_host_finish(driver_argv: Sequence[str]) -> list[str]:
    """Batch-script lines that run the driver (not exec: the runner must be stopped after it) and end
    the job with the driver's exit code."""
    return [
        "set +e",
        shlex.join(driver_argv),
        "converged_rc=$?",
        'kill "$converged_runner" 2>/dev/null',
        'wait "$converged_runner" 2>/dev/null',
        'exit "$converged_rc"',
    ]


def registry_reference(url: str) -> str | None:
    """The image reference a kubelet pulls for a rule's `container:` URL: `docker://x` -> `x`; None for
    what only Apptainer can run (a local file or directory, library://, shub://, oras://)."""
    if url.startswith("docker://"):
        ref = url.removeprefix("docker://")
        return ref or None
    return None


def rule_image_problem(url: str) -> str | None:
    """Why Kubernetes cannot run a rule image (None: it can)."""
    if registry_reference(url) is not None:
        return None
    if url.startswith("/") or "://" not in url:
        return (
            f"its container {url} is a file on the shared filesystem, which only Apptainer runs; "
            "Kubernetes pulls images from a registry (push it to the site registry, see the README)"
        )
    scheme = url.partition("://")[0]
    return f"its container {url} is a {scheme}:// image, which only Apptainer pulls; use a docker:// image"


def queues_by_path(paths: Sequence[str]) -> Mapping[str, str]:
    return {path: queue_name(index) for index, path in enumerate(paths)}
