"""Slurm 22.05 (Debian bookworm) on loopback: munged, MariaDB, slurmdbd, slurmctld,
three virtual slurmd nodes (c1, c2 in `cpu`; g1 with two fake A100s in `gpu`) and slurmrestd
with JWT authentication.

Every daemon runs in the foreground, started and stopped through `procs` (pid files, never
process names). State lives under layout.component_dir("slurm"); the Slurm configuration
lives in /etc/slurm so that sbatch/srun/scontrol find it without SLURM_CONF.
"""

from __future__ import annotations

import subprocess
import sys

from .. import jwt, packages, procs
from ..layout import Layout
from ..procs import ClusterError
from .accounting import ensure_step_users, grant_slurm_db_user, init_mariadb, register_accounting
from .config import prepare
from .daemons import mariadbd, munged, slurmctld, slurmd, slurmd_name, slurmdbd, slurmrestd
from .files import mkdir
from .probes import (
    Probe,
    node_ok,
    node_states,
    probe_mariadb,
    probe_munge,
    probe_restd,
    probe_slurmctld,
    probe_slurmdbd,
)
from .site import API_VERSION, CLUSTER, SLURM_CONF, TOKEN_LIFESPAN_S, nodes, paths

PACKAGES: list[str] = [
    "munge",
    "mariadb-server",
    "mariadb-client",  # mariadb-admin, mariadb
    "slurmdbd",
    "slurm-wlm-mysql-plugin",  # accounting_storage/mysql for slurmdbd
    "slurmctld",
    "slurmd",
    "slurmrestd",
    "slurm-wlm-jwt-plugin",  # auth/jwt for slurmctld/slurmdbd (slurmrestd ships only rest_auth/jwt)
    "slurm-client",
    # mpi_pmix_v4 (srun --mpi=pmix) dlopens libpmix.so from pmix2/lib, which only the -dev package ships
    "libpmix-dev",
]


# ---------------------------------------------------------------- public API


def mint_token(layout: Layout, user: str, lifespan_s: int = 3600) -> str:
    """A Slurm JWT for `user`, signed with the cluster's key (no slurmctld needed: see jwt.py)."""
    return jwt.mint(paths(layout).jwt_key, user, lifespan_s)


# What an MPI step's container needs to call the host's srun from inside (bindPaths of the
# SlurmCluster): the Slurm client and its plugins, its configuration, munge's socket and library, the
# users (srun refuses a SlurmUser it cannot look up), and the PMIx library mpi_pmix loads by path.
SLURM_CLIENT_BINDS = (
    "/usr/bin/srun",
    "/usr/lib/x86_64-linux-gnu/slurm-wlm",
    "/etc/slurm",
    "/run/munge",
    "/usr/lib/x86_64-linux-gnu/libmunge.so.2",
    "/etc/passwd",
    "/etc/group",
    "/usr/lib/x86_64-linux-gnu/pmix2",
)


def bind_paths(layout: Layout) -> list[str]:
    """The local SlurmCluster's bindPaths: the shared directory, then the Slurm client for MPI steps."""
    return [str(layout.shared), *SLURM_CLIENT_BINDS]


def env(layout: Layout) -> dict[str, str]:
    return {
        "CONVERGED_SLURM_BIND_PATHS": ",".join(bind_paths(layout)),
        "SLURMRESTD_URL": f"http://127.0.0.1:{layout.ports.slurmrestd}",
        "SLURM_JWT": mint_token(layout, "root", TOKEN_LIFESPAN_S),
        "SLURM_CLUSTER": CLUSTER,
        "SLURM_CONF": str(SLURM_CONF),
        "SLURMRESTD_API_VERSION": API_VERSION,
    }


def _restart(layout: Layout, changed: set[str]) -> None:
    """Config changed under running daemons: stop those that read it (up starts them again)."""
    if "slurm" in changed:
        for name in _slurm_daemon_names(layout):
            procs.stop(layout, name)
    if "slurmdbd" in changed:
        procs.stop(layout, "slurmdbd")
    if "mariadb" in changed:
        procs.stop(layout, "slurmdbd")
        procs.stop(layout, "mariadb")


def _slurm_daemon_names(layout: Layout) -> list[str]:
    return ["slurmrestd", *(slurmd_name(n) for n in nodes(layout)), "slurmctld"]


def _up_nodes(layout: Layout) -> None:
    for n in nodes(layout):
        mkdir(paths(layout).spool / n.name, None, 0o755)
        tmp = paths(layout).base / "tmp" / n.name  # the node's own /tmp
        mkdir(tmp.parent, None, 0o755)
        mkdir(tmp, None, 0o1777)
        procs.start(layout, slurmd(n, tmp))
    names = [n.name for n in nodes(layout)]

    def all_ok() -> bool:
        for name in names:
            if procs.running(layout, f"slurmd-{name}") is None:
                raise ClusterError(f"slurmd-{name} exited; see {procs.log_path(layout, f'slurmd-{name}')}")
        states = node_states()
        return all(node_ok(states.get(name, ("UNKNOWN", ""))[0]) for name in names)

    procs.wait_or_raise(layout, "slurmd", all_ok, 90, [f"slurmd-{n}" for n in names])


def up(layout: Layout) -> None:
    """Bring Slurm up (idempotent): packages, configs, daemons, accounting, health."""
    packages.ensure(PACKAGES)
    changed = prepare(layout)
    _restart(layout, changed)
    procs.start_and_wait(layout, munged(layout), probe_munge, 30)
    init_mariadb(layout)
    procs.start_and_wait(layout, mariadbd(layout), lambda: probe_mariadb(layout), 90)
    if "mariadb" in changed or procs.running(layout, "slurmdbd") is None:
        grant_slurm_db_user(layout)
    procs.start_and_wait(layout, slurmdbd(), probe_slurmdbd, 180)
    ensure_step_users()
    register_accounting()
    procs.start_and_wait(layout, slurmctld(), probe_slurmctld, 90)
    _up_nodes(layout)
    token = mint_token(layout, "root", 600)
    procs.start_and_wait(layout, slurmrestd(layout), lambda: probe_restd(layout, token), 60)


def _cancel_all_jobs(layout: Layout) -> None:
    """Cancel every job of our cluster and wait for their slurmstepd to end.

    A job's slurmstepd runs in its own session and would outlive slurmd: `down` must not leave it.
    """
    if procs.running(layout, "slurmctld") is None:
        return
    ids = procs.run(["squeue", "--noheader", "--format=%i"], check=False).stdout.split()
    if not ids:
        return
    procs.run(["scancel", *ids], check=False)
    try:
        procs.wait_until(
            "cancelled jobs to end",
            lambda: not procs.run(["squeue", "--noheader", "--states=R,CG,S", "--format=%i"]).stdout.strip(),
            60,
            procs.log_path(layout, "slurmctld"),
        )
    except ClusterError as e:  # a job stuck completing must not keep the daemons up: stop them anyway
        print(f"cluster down: {e}; stopping the Slurm daemons regardless", file=sys.stderr)


def down(layout: Layout) -> None:
    """Cancel our jobs, then stop the daemons we started (by pid file), consumers before dependencies."""
    _cancel_all_jobs(layout)
    for name in [*_slurm_daemon_names(layout), "slurmdbd", "mariadb", "munged"]:
        procs.stop(layout, name)


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    out: list[tuple[str, bool, str]] = []
    out.append(("munge", *_probe_daemon(layout, "munged", probe_munge)))
    out.append(("mariadb", *_probe_daemon(layout, "mariadb", lambda: probe_mariadb(layout))))
    out.append(("slurmdbd", *_probe_daemon(layout, "slurmdbd", probe_slurmdbd)))
    out.append(("slurmctld", *_probe_daemon(layout, "slurmctld", probe_slurmctld)))
    try:
        states = node_states()
    except (ClusterError, OSError, subprocess.TimeoutExpired) as e:
        states, err = {}, str(e)
    else:
        err = "not known to slurmctld"
    for n in nodes(layout):
        component = f"slurmd {n.name}"
        if procs.running(layout, slurmd_name(n)) is None:
            out.append((component, False, "not running"))
            continue
        state, reason = states.get(n.name, ("", err))
        out.append((component, bool(state) and node_ok(state), f"{state} {reason}".strip()))
    out.append(("slurmrestd", *_probe_daemon(layout, "slurmrestd", lambda: _probe_restd_fresh(layout))))
    return out


def _probe_restd_fresh(layout: Layout) -> tuple[bool, str]:
    try:
        token = mint_token(layout, "root", 300)
    except (ClusterError, OSError) as e:
        return False, f"no token: {e}"
    return probe_restd(layout, token)


def _probe_daemon(layout: Layout, name: str, probe: Probe) -> tuple[bool, str]:
    if procs.running(layout, name) is None:
        return False, "not running"
    try:
        return probe()
    except Exception as e:  # noqa: BLE001 - a failing probe is a health result, not a crash
        return False, str(e)
