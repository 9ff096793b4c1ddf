"""Files and directories owned by the right user, written only when their content changed."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

# ---------------------------------------------------------------- files


def _ids(user: str) -> tuple[int, int]:
    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid


def _own(path: Path, user: str | None, mode: int) -> None:
    if user is not None:
        uid, gid = _ids(user)
        st = path.stat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
    if path.stat().st_mode & 0o7777 != mode:
        os.chmod(path, mode)


def mkdir(path: Path, user: str | None = None, mode: int = 0o755) -> None:
    path.mkdir(parents=True, exist_ok=True)
    _own(path, user, mode)


def write(path: Path, content: str | bytes, user: str | None = None, mode: int = 0o644) -> bool:
    """Write `content` atomically unless it is already there; fix owner and mode. True if changed."""
    data = content.encode() if isinstance(content, str) else content
    try:
        changed = path.read_bytes() != data
    except FileNotFoundError:
        changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _own(tmp, user, mode)
        os.replace(tmp, path)
    else:
        _own(path, user, mode)
    return changed


def secret(path: Path, nbytes: int, user: str | None, mode: int = 0o400, text: bool = False) -> bytes:
    """A random secret generated once and kept (the munge key, the JWT key, the DB password)."""
    if not path.exists():
        raw = os.urandom(nbytes)
        write(path, raw.hex() if text else raw, user, mode)
    _own(path, user, mode)
    return path.read_bytes()
