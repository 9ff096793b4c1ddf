"""What the preflight needs from this machine: directories as they are, users as the system knows them."""

from __future__ import annotations

import grp
import os
import pwd

from snakemake_executor_plugin_converged.preflight import PathFacts, UserFacts


def read_path_facts(path: str) -> PathFacts:
    try:
        st = os.stat(path)
    except OSError:
        return PathFacts(path, exists=False)
    return PathFacts(path, True, st.st_uid, st.st_gid, st.st_mode)


def read_user_facts(name: str) -> UserFacts | None:
    """The user's uid and groups here; None when this machine does not know the user."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    return UserFacts(name, pw.pw_uid, frozenset(gids))
