"""Files a Slurm step needs on the shared filesystem, made as the step's Slurm user: its log directory,
its private secret-environment file (I/O). The tail of a failed job's log: `converged_bridge.logfiles`."""

from __future__ import annotations

import os
import pwd
from pathlib import Path


def prepare_dir(path: str, user: str, mode: int = 0o755) -> None:
    """Create `path` (and parents) owned by `user` when we may: on a shared filesystem the controller sees.

    Without access (a remote Slurm cluster) this does nothing: the site provides the directory.
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True, mode=mode)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(user)
            os.chown(p, pw.pw_uid, pw.pw_gid)
    except (OSError, KeyError):
        return


def write_private_file(path: str, content: str, user: str) -> None:
    """Write `content` to `path` readable by `user` only (mode 0600)."""
    p = Path(path)
    prepare_dir(str(p.parent), user, mode=0o700)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam(user)
            os.chown(p, pw.pw_uid, pw.pw_gid)
        except KeyError:
            pass
