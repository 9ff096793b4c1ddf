"""Files a Slurm step needs on the shared filesystem, made for the step's Slurm user: its log directory,
its private secret-environment file (I/O). The tail of a failed job's log: `converged_bridge.logfiles`.

A directory made here belongs to the step's user, unless it is made inside a directory every user may
write (mode 1777, a team's scratch): then it is 1777 too, so the steps of several users share it. A
directory that exists is never re-owned or re-moded: handing it from user to user at each submission
left whoever submitted second without a log (their job died at once, by signal 53).
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

SHARED = 0o1777


def prepare_dir(path: str, user: str, mode: int = 0o755, *, private: bool = False) -> str | None:
    """Make `path` (and parents) a directory `user` may write, when we may: on a shared filesystem the
    controller sees. None when it is one (or we cannot tell: a remote Slurm cluster, a user unknown here,
    where the site provides the directory), else why not and what to change. A `private` directory is
    the user's even inside a shared one."""
    p = Path(path)
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        pw = None
    try:
        if not p.exists():
            _make(p, pw, mode, private)
        st = p.stat()
    except OSError:
        return None
    if pw is None or os.geteuid() != 0 or _writable_by(st, pw):
        return None
    owner = _name(st.st_uid)
    return (
        f"{path} belongs to {owner} (mode {stat.S_IMODE(st.st_mode):04o}): the Slurm user {user} cannot "
        f"write its job's log there; remove it, or make it writable by {user} (chmod 1777 where steps of "
        "several users share the directory)"
    )


def _make(p: Path, pw: pwd.struct_passwd | None, mode: int, private: bool) -> None:
    above = next(a for a in p.parents if a.exists())
    shared = not private and stat.S_IMODE(above.stat().st_mode) & SHARED == SHARED
    missing = [p, *(a for a in p.parents if a != above and above in a.parents)]
    p.mkdir(parents=True, exist_ok=True, mode=mode)
    for made in reversed(missing):
        if shared:
            made.chmod(SHARED)
        elif made == p and pw is not None and os.geteuid() == 0:
            os.chown(made, pw.pw_uid, pw.pw_gid)


def _writable_by(st: os.stat_result, pw: pwd.struct_passwd) -> bool:
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == pw.pw_uid:
        return bool(mode & stat.S_IWUSR)
    if st.st_gid in os.getgrouplist(pw.pw_name, pw.pw_gid):
        return bool(mode & stat.S_IWGRP)
    return bool(mode & stat.S_IWOTH)


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def write_private_file(path: str, content: str, user: str) -> None:
    """Write `content` to `path` readable by `user` only (mode 0600), in a directory of theirs (0700)."""
    p = Path(path)
    prepare_dir(str(p.parent), user, mode=0o700, private=True)
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
