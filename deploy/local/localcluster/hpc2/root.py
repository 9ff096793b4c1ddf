"""Running a program in hpc2's root: a mount namespace of its own whose root *is* the sid tree.

Not a chroot: the kernel refuses a new user namespace to a process whose root is not its mount
namespace's root (`unshare --user` fails with EPERM in a chroot), and Apptainer and charliecloud start
every unprivileged container with one. So each daemon (and each command of `exec`) runs as
`unshare --mount` + a script that binds what the cluster shares with the host into the tree, makes the
tree read-only, `pivot_root`s into it and detaches the old root. Its jobs inherit that namespace.

Shared with the host, at the same paths: munge's socket (/run/munge: one munged, one key), the users
(/etc/passwd, group, shadow, gshadow: the same uids on both clusters), /home, the shared filesystem, the step
images (read-only), and hpc2's own state directory; /etc/slurm is hpc2's configuration and
/etc/apptainer/apptainer.conf the local cluster's (deploy/local/apptainer.conf, as on hpc1).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import apptainer
from ..layout import Layout
from .shape import paths

ENV_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SITE_CA = Path("/etc/ssl/certs/converged-local-ca.pem")


@dataclass(frozen=True)
class RootSpec:
    """What one process in the root sees. `tmp` is its /tmp (a tmpfs when None)."""

    root: Path
    binds: tuple[Path, ...]  # host directories at the same path, read-write
    ro_binds: tuple[Path, ...]  # the same, read-only
    files: tuple[tuple[Path, Path], ...]  # (host file, path in the root), read-only
    etc_slurm: Path
    tmp: Path | None = None


def root_dir(layout: Layout) -> Path:
    """The sid tree build-slurm-sid.sh made, cached by Slurm version."""
    return layout.cached("slurm-sid", "root")


def root_spec(layout: Layout, tmp: Path | None = None) -> RootSpec:
    p = paths(layout)
    return RootSpec(
        root=root_dir(layout),
        binds=(p.base, layout.shared, Path("/home")),
        # the stable SIF path is a link into the image cache: both are bound
        ro_binds=(apptainer.stable_sif(layout).parent, layout.cache / "images"),
        files=(
            # the users, as a site shares them (slurmd's `su - <user>` for --export=NONE needs shadow)
            *((Path(f), Path(f)) for f in ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")),
            (Path("/etc/hosts"), Path("/etc/hosts")),
            (p.apptainer_conf, Path("/etc/apptainer/apptainer.conf")),
            # the site's CA, which signs the site registry's certificate: Go (Apptainer's `docker://`
            # pulls) reads every file of /etc/ssl/certs beside the bundle
            (layout.pki / "ca.crt", SITE_CA),
        ),
        etc_slurm=p.etc,
        tmp=tmp,
    )


def build_enter_script(spec: RootSpec) -> str:
    """The script `unshare --mount` runs (pure): mounts, pivot_root, then `exec env -i ... "$@"`.

    Mount points the tree lacks are made in it before it turns read-only (empty directories and
    files, the same on every run); a host directory it binds that does not exist yet is made empty (on a
    fresh machine hpc2 starts before the images it binds are built, beside it).
    """
    q = shlex.quote
    lines = [
        "set -e",  # every command on its own line: `set -e` ignores a failure inside an && list
        f"r={q(str(spec.root))}",
        'mount --bind "$r" "$r"',  # pivot_root wants a mount point
        'mount -t proc proc "$r/proc"',  # a proc of its own, fully visible (user namespaces need one)
        'mount --rbind /sys "$r/sys"',
        'mount --rbind /dev "$r/dev"',  # /dev/fuse (0666) for squashfuse, /dev/shm, /dev/pts
        'mount -t tmpfs -o mode=0755 tmpfs "$r/run"',
        'mkdir -p "$r/run/munge"',
        'mount --bind /run/munge "$r/run/munge"',
    ]
    if spec.tmp is None:
        lines.append('mount -t tmpfs -o mode=1777,size=256m tmpfs "$r/tmp"')
    else:
        lines.append(f'mount --bind {q(str(spec.tmp))} "$r/tmp"')

    def bind(host: Path, inside: Path, *, read_only: bool, file: bool = False) -> None:
        target = f'"$r"{q(str(inside))}'
        if not file:  # a host directory may not exist yet (the images, on a fresh machine): made empty
            lines.append(f"mkdir -p {q(str(host))}")
        if file:  # its directory too: the site's CA goes into /etc/ssl/certs, which sid's tree may lack
            lines.append(f'mkdir -p "$r"{q(str(inside.parent))}')
            lines.append(f"[ -e {target} ] || : > {target}")
        else:
            lines.append(f"mkdir -p {target}")
        lines.append(f"mount --bind {q(str(host))} {target}")
        if read_only:
            lines.append(f"mount -o remount,bind,ro {target}")

    for path in spec.binds:
        bind(path, path, read_only=False)
    for path in spec.ro_binds:
        bind(path, path, read_only=True)
    for host, inside in spec.files:
        bind(host, inside, read_only=True, file=True)
    bind(spec.etc_slurm, Path("/etc/slurm"), read_only=True)
    lines += [
        'mount -o remount,bind,ro "$r"',
        # pivot_root(".", "."): the old root ends up stacked on the new one, and is detached
        'cd "$r"',
        "pivot_root . .",
        "umount -l .",
        "cd /",
        f'exec /usr/bin/env -i PATH={ENV_PATH} LANG=C.UTF-8 HOME=/root "$@"',
    ]
    return "\n".join(lines) + "\n"


def build_argv(
    spec: RootSpec,
    argv: Sequence[str],
    *,
    user: tuple[int, int] | None = None,
    env: Mapping[str, str] | None = None,
    name: str = "hpc2",
) -> list[str]:
    """argv that runs `argv` in the root (as the uid and gid `user`, with its groups; with only `env`
    beside PATH, LANG and HOME)."""
    inner = list(argv)
    if user:
        uid, gid = user
        inner = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--", *inner]
    assignments = [f"{k}={v}" for k, v in (env or {}).items()]
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        build_enter_script(spec),
        name,  # $0 of the script
        *assignments,
        *inner,
    ]
