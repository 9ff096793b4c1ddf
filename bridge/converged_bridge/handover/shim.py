#!/usr/bin/env python3
"""converged's `apptainer` inside a step's driver container: hands each rule command to the rule's image.

A step whose rule names its own image (snakemake's `container:` with `--sdm apptainer`) runs its
snakemake in the site's step image (the *driver*) and the rule's commands in the rule's image. snakemake
wraps each command as `apptainer exec --home CWD [--bind ...] IMAGE bash -c CMD`; this script is the
`apptainer` it finds on PATH. It does not run the command: it writes it as a request into the hand-over
directory and a runner outside the driver runs it, streaming its output back and returning its exit code:

- mode `host` (Slurm): the runner is the batch script on the node; each request is the whole `apptainer
  exec ...` as snakemake built it, run there by the real Apptainer (so every option snakemake and the
  user gave applies, and the image is the SIF snakemake pulled onto the shared filesystem);
- mode `pod` (Kubernetes): the runner is a sidecar container of the rule's image in the same pod; a
  request is the command itself, run in that container's shell from the working directory snakemake
  chose, with HOME and the environment Apptainer would have given it.

Python rules (`script:`) bind snakemake's search paths into the container; they live in the driver,
so the first such request copies them into the hand-over directory, where the runner finds them.

Stdlib only, Python 3.8+: this file runs in the step image, where converged itself is not installed. The
controller ships its text (`converged_bridge.handover.build.shim_source`).

Protocol, in CONVERGED_HANDOVER (one per step): the driver made the FIFO `queue` (one per rule image in a
pod: `queue-<i>`); a request is a directory `req.<random>` holding `run.sh` (every word quoted), and the
FIFOs `out` and `err`; its name is then written as one line to the queue. The runner runs `run.sh` with
stdout and stderr on those FIFOs and writes its exit code to `rc` by a rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO

VERSION = "apptainer version 1.5.3+converged"
SEARCHPATH_MOUNT = "/mnt/snakemake_searchpaths/"
# what a container gets of the driver's environment: everything Apptainer passes, but what belongs to the
# driver's own image or process (its PATH, libraries, shell state, Apptainer's own variables)
_DROPPED = frozenset(
    {"PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "_", "HOSTNAME", "PS1", "LD_LIBRARY_PATH", "LD_PRELOAD"}
)
_DROPPED_PREFIXES = ("APPTAINER_", "SINGULARITY_", "CONVERGED_")
_ENV_PREFIXES = ("APPTAINERENV_", "SINGULARITYENV_")
# apptainer exec options that take a value (so the image is not mistaken for one)
_VALUED = frozenset(
    {"--bind", "-B", "--home", "-H", "--pwd", "--env", "--env-file", "--mount", "--overlay", "-o",
     "--security", "--workdir", "-W", "--scratch", "-S", "--hostname", "--fusemount", "--network",
     "--network-args", "--apply-cgroups", "--dns", "--app", "--add-caps", "--drop-caps", "--cpus",
     "--memory", "--memory-reservation", "--memory-swap", "--cpu-shares", "--cpuset-cpus",
     "--cpuset-mems", "--pids-limit", "--blkio-weight", "--oci-conf", "--sif-fuse", "--userns-map"}
)  # fmt: skip


class Refused(Exception):
    """A call this stand-in cannot serve; exits 127 (as a missing program does) with the message."""


def parse_exec(args: Sequence[str], images: Mapping[str, str]) -> tuple[list[str], str, list[str]]:
    """(options, image, command) of `exec`'s arguments. The image is the first argument that is one of
    the step's images (`images`: path -> queue); failing that, the first that is not an option."""
    for index, arg in enumerate(args):
        if arg in images:
            return list(args[:index]), arg, list(args[index + 1 :])
    index = 0
    while index < len(args) and args[index].startswith("-"):
        option = args[index]
        index += 2 if option in _VALUED and "=" not in option else 1
    if index >= len(args):
        raise Refused("exec: no image named")
    return list(args[:index]), args[index], list(args[index + 1 :])


def option_values(options: Sequence[str], *names: str) -> list[str]:
    """Every value given to one of `names` (`--opt value` or `--opt=value`)."""
    values = []
    for index, option in enumerate(options):
        name, eq, value = option.partition("=")
        if name in names:
            if eq:
                values.append(value)
            elif index + 1 < len(options):
                values.append(options[index + 1])
    return values


def carried_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The driver's variables a container started by Apptainer would see (APPTAINERENV_X as X)."""
    carried = {}
    for name, value in environ.items():
        if name in _DROPPED or name.startswith(_DROPPED_PREFIXES) or not name.isidentifier():
            continue
        for prefix in _ENV_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        carried[name] = value
    return carried


def searchpath_binds(options: Sequence[str]) -> list[tuple[str, str]]:
    """snakemake's binds of its own search paths (for `script:` rules): (driver path, mount point)."""
    pairs = []
    for value in option_values(options, "--bind", "-B"):
        source, _, target = value.partition(":")
        target = target.partition(":")[0]
        if target.startswith(SEARCHPATH_MOUNT):
            pairs.append((source, target))
    return pairs


def rewrite_binds(options: Sequence[str], copies: Mapping[str, str]) -> list[str]:
    """`options` with each bind source found in `copies` replaced by its copy."""
    out = []
    for option in options:
        name, eq, value = option.partition("=")
        source, colon, rest = value.partition(":") if eq else option.partition(":")
        if eq and name in ("--bind", "-B") and source in copies:
            out.append(f"{name}={copies[source]}{colon}{rest}")
        elif not eq and colon and source in copies and out and out[-1] in ("--bind", "-B"):
            out.append(f"{copies[source]}{colon}{rest}")
        else:
            out.append(option)
    return out


def build_pod_script(options: Sequence[str], command: Sequence[str], cwd: str, env: Mapping[str, str]) -> str:
    """run.sh for a pod's runner: the command in the rule image's shell, as Apptainer would start it."""
    home = (option_values(options, "--home", "-H") or [cwd])[-1].partition(":")[0]
    pwd = (option_values(options, "--pwd") or [cwd])[-1]
    for value in option_values(options, "--env"):
        name, eq, val = value.partition("=")
        if eq and name.isidentifier():
            env = {**env, name: val}
    lines = [f"cd {shlex.quote(pwd)} || exit 1"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    lines.append(f"export HOME={shlex.quote(home)}")
    if command:
        shell = command[0]
        # snakemake asks for bash; an image without it still has a POSIX shell
        lines.append(f"command -v {shlex.quote(shell)} >/dev/null 2>&1 || set -- sh")
        lines.append(
            f'exec "${{1:-{shell}}}" {shlex.join(command[1:])}' if command[1:] else f'exec "${{1:-{shell}}}"'
        )
    return "\n".join(lines) + "\n"


# snakemake runs `bash -c CMD` in a rule's image; many tool images have only a POSIX sh
_ANY_SHELL = 'if command -v "$0" >/dev/null 2>&1; then exec "$0" "$@"; fi; exec sh "$@"'


def any_shell(command: Sequence[str]) -> list[str]:
    """`command` (shell, args...) run by that shell where the image has it, else by `sh`."""
    if not command or command[0] == "sh":
        return list(command)
    return ["sh", "-c", _ANY_SHELL, *command]


def build_host_script(arguments: Sequence[str], cwd: str, env: Mapping[str, str]) -> str:
    """run.sh for Slurm's runner: Apptainer's own command line, run by the real one on the node from the
    directory snakemake ran it in (a shadow rule's own, say), which the container starts in."""
    lines = [f"cd {shlex.quote(cwd)} || exit 1"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    lines.append(f'exec "$converged_runtime" {shlex.join(arguments)}')
    return "\n".join(lines) + "\n"


def copy_searchpaths(pairs: Sequence[tuple[str, str]], into: str) -> dict[str, str]:
    """Copy each driver search path once into `into/<item>` (the name of its mount point); driver path
    -> copy. Concurrent requests copy into a temporary name and rename, so a copy is whole or absent."""
    copies = {}
    for source, target in pairs:
        item = os.path.basename(target.rstrip("/"))
        dest = os.path.join(into, item)
        if not os.path.isdir(dest) and os.path.isdir(source):
            part = tempfile.mkdtemp(prefix=f".{item}.", dir=into)
            shutil.copytree(source, os.path.join(part, "tree"), symlinks=True, dirs_exist_ok=True)
            with contextlib.suppress(OSError):  # another request copied it first
                os.rename(os.path.join(part, "tree"), dest)
            shutil.rmtree(part, ignore_errors=True)
        copies[source] = dest
    return copies


def _pump(path: str, sink: IO[bytes]) -> None:
    with open(path, "rb", buffering=0) as stream:
        while True:
            chunk = stream.read(65536)
            if not chunk:
                return
            sink.write(chunk)
            sink.flush()


def hand_over(handover: str, queue: str, script: str) -> int:
    """Write the request, queue it, stream its output, return its exit code."""
    request = tempfile.mkdtemp(prefix="req.", dir=handover)
    for name in ("out", "err"):
        os.mkfifo(os.path.join(request, name), 0o600)
    with open(os.path.join(request, "run.sh"), "w", encoding="utf-8") as f:
        f.write(script)
    pumps = [
        threading.Thread(target=_pump, args=(os.path.join(request, "out"), sys.stdout.buffer), daemon=True),
        threading.Thread(target=_pump, args=(os.path.join(request, "err"), sys.stderr.buffer), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    with open(os.path.join(handover, queue), "w", encoding="utf-8") as q:
        q.write(os.path.basename(request) + "\n")
    rc_path = os.path.join(request, "rc")
    while not os.path.exists(rc_path):
        time.sleep(0.02)
    for pump in pumps:
        pump.join(timeout=5)
    with open(rc_path, encoding="utf-8") as f:
        code = int(f.read().strip() or "1")
    shutil.rmtree(request, ignore_errors=True)
    return code


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    args = list(argv[1:])
    while args and args[0] in (
        "-q",
        "--quiet",
        "-s",
        "--silent",
        "-d",
        "--debug",
        "-v",
        "--verbose",
        "--nocolor",
    ):
        args.pop(0)
    if not args or args[0] in ("--version", "version"):
        print(VERSION)
        return 0
    if args[0] == "pull":
        return 0  # the workflow's snakemake pulled the image already; the runner has it
    if args[0] != "exec":
        raise Refused(f"{args[0]!r} is not available inside a converged step (only exec)")
    handover = environ["CONVERGED_HANDOVER"]
    images: dict[str, str] = json.loads(environ.get("CONVERGED_RULE_IMAGES", "{}"))
    options, image, command = parse_exec(args[1:], images)
    pairs = searchpath_binds(options)
    copies = copy_searchpaths(pairs, environ.get("CONVERGED_SEARCHPATHS", handover)) if pairs else {}
    env = carried_environment(environ)
    if environ.get("CONVERGED_HANDOVER_MODE") == "host":
        options = rewrite_binds(options, copies)
        script = build_host_script(["exec", *options, image, *any_shell(command)], os.getcwd(), env)
        return hand_over(handover, "queue", script)
    queue = images.get(image)
    if queue is None:
        known = ", ".join(sorted(images)) or "none"
        raise Refused(f"image {image} is not one this step's pod runs (its rule images: {known})")
    return hand_over(handover, queue, build_pod_script(options, command, os.getcwd(), env))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv, os.environ))
    except Refused as e:
        print(f"converged: apptainer: {e}", file=sys.stderr)
        sys.exit(127)
