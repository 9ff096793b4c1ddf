"""How each Slurm daemon is started: argv, user, pid file."""

from __future__ import annotations

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


def slurmd(node: Node) -> Daemon:
    return Daemon(slurmd_name(node), ["slurmd", "-D", "-N", node.name])


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
            f"127.0.0.1:{layout.ports.slurmrestd}",
        ],
        env={"SLURM_JWT": ""},
    )  # never a caller's token: every request must bring its own
