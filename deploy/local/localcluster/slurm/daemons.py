"""How each Slurm daemon is started: argv, user, pid file."""

from __future__ import annotations

import shlex
from pathlib import Path

from ..layout import Layout
from ..procs import Daemon
from .site import MUNGE_USER, MYSQL_USER, OPENAPI_PLUGINS, RESTD_USER, SLURM_USER, Node, paths

# ---------------------------------------------------------------- daemons


def slurmd_name(node: Node) -> str:
    return f"slurmd-{node.name}"


def munged(layout: Layout) -> Daemon:
    p = paths(layout)
    return Daemon(
        "munged",
        [
            "munged",
            "--foreground",
            f"--key-file={p.munge_key}",
            f"--pid-file={p.munge}/munged.pid",
            f"--seed-file={p.munge}/munged.seed",  # in the foreground it logs to stderr, i.e. our log
        ],
        user=MUNGE_USER,
    )


def mariadbd(layout: Layout) -> Daemon:
    return Daemon("mariadb", ["mariadbd", f"--defaults-file={paths(layout).mariadb_cnf}"], user=MYSQL_USER)


def slurmdbd() -> Daemon:
    return Daemon("slurmdbd", ["slurmdbd", "-D"], user=SLURM_USER)


def slurmctld() -> Daemon:
    return Daemon("slurmctld", ["slurmctld", "-D", "-i"], user=SLURM_USER)


def slurmd(node: Node, tmp: Path) -> Daemon:
    """slurmd of one virtual node, with a /tmp of its own as a real node has: in a mount namespace of
    its own (which its jobs inherit), `tmp` is bound on /tmp. Without it, two nodes' slurmstepds collide
    on PMIx's client directory (/tmp/spmix_appdir_<uid>_<step>: "File exists"), so no MPI step spans
    nodes, and jobs of c1 and c2 would share files a real cluster keeps apart."""
    script = f"mount --bind {shlex.quote(str(tmp))} /tmp && exec slurmd -D -N {shlex.quote(node.name)}"
    return Daemon(
        slurmd_name(node), ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script]
    )


def slurmrestd(layout: Layout) -> Daemon:
    # Started as root so that -u drops to `nobody` after binding (setpriv would need a group "nobody").
    return Daemon(
        "slurmrestd",
        [
            "slurmrestd",
            "-a",
            "rest_auth/jwt",
            "-s",
            OPENAPI_PLUGINS,
            "-u",
            RESTD_USER,
            # on every address: the host's clients on loopback, the daemon's pods on the bridge address
            f"0.0.0.0:{layout.ports.slurmrestd}",
        ],
        env={"SLURM_JWT": ""},
    )  # never a caller's token: every request must bring its own
