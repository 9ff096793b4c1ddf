"""hpc2 — the local cluster's second Slurm cluster: Slurm 26.05 (Debian sid) beside hpc1's 22.05.

Its own slurmdbd, slurmctld, three slurmd nodes (h2n1, h2n2 in `cpu` and `long`; h2big in `bigmem`) and
slurmrestd with JWT, each in a mount namespace whose root is the sid tree build-slurm-sid.sh made
(`root.py` says why not a chroot), on ports of its own. Shared with hpc1: the host's munged (one key)
and MariaDB server (a database and user of its own), the users and the shared filesystem. Jobs run
the step image's SIF through sid's Apptainer.

Every daemon is started and stopped through `procs` (pid files, never process names). Slurm's commands
for hpc2 are sid's and need its libraries: `run` (and `deploy/local/cluster hpc2-exec CMD...`) runs
them in the root.
"""

from __future__ import annotations

import grp
import json
import pwd
import subprocess
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import apptainer, jwt, procs
from ..layout import HERE, Layout
from ..procs import ClusterError, Daemon, Probe
from ..slurm import site as hpc1
from ..slurm.probes import node_ok, parse_node_states
from . import root
from .config import prepare
from .shape import (
    ACCOUNT,
    CLUSTER,
    DB_NAME,
    DB_USER,
    RESTD_GROUP,
    RESTD_USER,
    SLURM_USER,
    STEP_USERS,
    TOKEN_LIFESPAN_S,
    nodes,
    paths,
)

__all__ = ["CLUSTER", "down", "env", "health", "in_root", "mint_token", "nodes", "run", "up"]

RESTD_PROBE_VERSION = "v0.0.45"  # the newest data parser 26.05 serves


def in_root(
    layout: Layout,
    argv: Sequence[str],
    *,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    tmp: Path | None = None,
) -> list[str]:
    """argv that runs `argv` in hpc2's root, as `user` (a name of the host's passwd, which the root
    shares) or root."""
    ids = None
    if user:
        pw = pwd.getpwnam(user)
        ids = (pw.pw_uid, pw.pw_gid)
    return root.build_argv(root.root_spec(layout, tmp), argv, user=ids, env=env)


def run(
    layout: Layout,
    argv: Sequence[str],
    *,
    user: str | None = None,
    input: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run one of hpc2's commands (sid's sbatch, squeue, sacctmgr, scontrol, ...) in its root."""
    return procs.run(in_root(layout, argv, user=user), input=input, check=check, timeout=timeout)


def mint_token(layout: Layout, user: str, lifespan_s: int = 3600) -> str:
    """An hpc2 JWT for `user` (signed with hpc2's key: hpc1 refuses it, and the other way round; no
    slurmctld needed, see jwt.py)."""
    return jwt.mint(paths(layout).jwt_key, user, lifespan_s)


# ---------------------------------------------------------------- daemons


def _daemon(
    layout: Layout,
    name: str,
    argv: Sequence[str],
    *,
    user: str | None = None,
    tmp: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Daemon:
    return Daemon(f"{CLUSTER}-{name}", in_root(layout, argv, user=user, tmp=tmp, env=env))


def slurmdbd(layout: Layout) -> Daemon:
    return _daemon(layout, "slurmdbd", ["slurmdbd", "-D"], user=SLURM_USER)


def slurmctld(layout: Layout) -> Daemon:
    return _daemon(layout, "slurmctld", ["slurmctld", "-D", "-i"], user=SLURM_USER)


def slurmd(layout: Layout, node: str) -> Daemon:
    """Each node in a namespace of its own with its own /tmp, as hpc1's nodes."""
    return _daemon(layout, f"slurmd-{node}", ["slurmd", "-D", "-N", node], tmp=paths(layout).tmp(node))


def slurmrestd(layout: Layout) -> Daemon:
    """Started as root; -u/-g drop to nobody after binding, given as numbers: 26.05's slurmrestd dies
    with "Unable to resolve user: nobody" on the name (getent finds it). No SLURM_JWT in its
    environment: every request brings its own token. But SLURM_JWT must be *set* (empty, as on hpc1):
    without it slurmrestd talks to slurmctld through auth/munge, which refuses every request's token
    ("Rejecting thread config token for user root"). Every data parser 26.05 ships is served."""
    uid, gid = pwd.getpwnam(RESTD_USER).pw_uid, grp.getgrnam(RESTD_GROUP).gr_gid
    argv = ["slurmrestd", "-a", "rest_auth/jwt", "-s", "openapi/slurmctld,openapi/slurmdbd"]
    argv += ["-u", str(uid), "-g", str(gid), f"0.0.0.0:{layout.ports.hpc2_slurmrestd}"]
    return _daemon(layout, "slurmrestd", argv, env={"SLURM_JWT": ""})


def _daemon_names(layout: Layout) -> list[str]:
    """Consumers before what they depend on: the order to stop them."""
    return [
        f"{CLUSTER}-slurmrestd",
        *(f"{CLUSTER}-slurmd-{n.name}" for n in nodes(layout)),
        f"{CLUSTER}-slurmctld",
        f"{CLUSTER}-slurmdbd",
    ]


# ---------------------------------------------------------------- probes


def _ok(layout: Layout, argv: Sequence[str]) -> tuple[bool, str]:
    try:
        cp = run(layout, argv, check=False, timeout=20)
    except ClusterError as e:
        return False, str(e)
    out = (cp.stdout.strip() or cp.stderr.strip())[-500:]
    return cp.returncode == 0, out


def probe_slurmdbd(layout: Layout) -> tuple[bool, str]:
    ok, out = _ok(layout, ["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"])
    return ok, f"clusters: {out.replace(chr(10), ',') or '(none)'}" if ok else out


def probe_slurmctld(layout: Layout) -> tuple[bool, str]:
    ok, out = _ok(layout, ["scontrol", "ping"])
    return ok and "UP" in out, out


def node_states(layout: Layout) -> dict[str, tuple[str, str]]:
    cp = run(layout, ["scontrol", "show", "node", "-o"], timeout=20)
    return parse_node_states(cp.stdout)


def probe_restd(layout: Layout, token: str) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{layout.ports.hpc2_slurmrestd}/slurm/{RESTD_PROBE_VERSION}/ping"
    req = urllib.request.Request(url, headers={"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": token})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - fixed http://127.0.0.1 URL
            body = json.load(r)
    except (OSError, ValueError) as e:
        return False, str(e)
    pings, errors = body.get("pings", []), body.get("errors", [])
    if errors or not pings:
        return False, json.dumps(errors or body)[:300]
    release = (body.get("meta", {}).get("slurm") or {}).get("release", "?")
    states = ", ".join(f"{p.get('hostname')} {'UP' if p.get('responding') else 'DOWN'}" for p in pings)
    return True, f"Slurm {release}, {RESTD_PROBE_VERSION}: {states}"


def probe_apptainer(layout: Layout, user: str = "nobody") -> tuple[bool, str]:
    """The step image's SIF run by sid's Apptainer in the root, as an unprivileged user (as a job would)."""
    code = "import os, snakemake; print(snakemake.__version__, os.getuid())"
    argv = ["apptainer", "--silent", "exec", "--no-eval", "--cleanenv", str(apptainer.stable_sif(layout))]
    try:
        cp = run(layout, [*argv, "python3", "-c", code], user=user, check=False, timeout=60)
    except ClusterError as e:
        return False, str(e)
    if cp.returncode != 0:
        return False, f"apptainer exec failed: {cp.stderr.strip()[-200:]}"
    version = run(layout, ["apptainer", "--version"], check=False).stdout.strip()
    return True, f"{version}; step.sif as {user}: snakemake {cp.stdout.split()[0]}"


# ---------------------------------------------------------------- accounting


def _grant_db_user(layout: Layout) -> None:
    """hpc2's database and user on hpc1's MariaDB (which must be up)."""
    pw = paths(layout).db_password.read_text().strip()
    statements = []
    for host in ("localhost", "127.0.0.1"):
        statements += [
            f"CREATE USER IF NOT EXISTS '{DB_USER}'@'{host}' IDENTIFIED BY '{pw}';",
            f"ALTER USER '{DB_USER}'@'{host}' IDENTIFIED BY '{pw}';",
            f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'{host}';",
        ]
    socket = hpc1.paths(layout).mariadb_socket
    procs.run(["mariadb", f"--socket={socket}", "-uroot", "--batch"], input="\n".join([*statements, ""]))


def _sacctmgr_list(layout: Layout, *args: str) -> list[str]:
    cp = run(layout, ["sacctmgr", "-n", "-P", "list", *args])
    return [ln for ln in cp.stdout.splitlines() if ln.strip()]


def _register_accounting(layout: Layout) -> None:
    """The cluster, the account and root's and the step users' associations, each only if missing."""
    if CLUSTER not in _sacctmgr_list(layout, "cluster", "format=cluster"):
        run(layout, ["sacctmgr", "-i", "add", "cluster", CLUSTER])
    if ACCOUNT not in _sacctmgr_list(layout, "account", ACCOUNT, "format=account"):
        run(layout, ["sacctmgr", "-i", "add", "account", ACCOUNT, f"cluster={CLUSTER}",
                     "description=converged local hpc2", "organization=converged"])  # fmt: skip
    for user in ("root", *STEP_USERS):
        assoc = ("association", f"cluster={CLUSTER}", f"account={ACCOUNT}", f"user={user}", "format=user")
        if not _sacctmgr_list(layout, *assoc):
            run(layout, ["sacctmgr", "-i", "add", "user", user, f"account={ACCOUNT}", f"cluster={CLUSTER}",
                         f"defaultaccount={ACCOUNT}"])  # fmt: skip


# ---------------------------------------------------------------- up / down


def built(layout: Layout) -> bool:
    return (root.root_dir(layout) / ".converged-recipe").exists()


def _up_nodes(layout: Layout) -> None:
    for n in nodes(layout):
        procs.start(layout, slurmd(layout, n.name))
    names = [n.name for n in nodes(layout)]

    def all_ok() -> bool:
        for name in names:
            if procs.running(layout, f"{CLUSTER}-slurmd-{name}") is None:
                log = procs.log_path(layout, f"{CLUSTER}-slurmd-{name}")
                raise ClusterError(f"{CLUSTER}-slurmd-{name} exited; see {log}")
        states = node_states(layout)
        return all(node_ok(states.get(name, ("UNKNOWN", ""))[0]) for name in names)

    procs.wait_or_raise(layout, f"{CLUSTER} slurmd", all_ok, 90, [f"{CLUSTER}-slurmd-{n}" for n in names])


def up(layout: Layout) -> None:
    """Bring hpc2 up (idempotent). hpc1's munged and MariaDB must run (slurm.up starts them)."""
    if not built(layout):
        raise ClusterError(f"hpc2's root is not built at {root.root_dir(layout)} (cluster build makes it)")
    changed = prepare(layout)
    if "root" in changed:
        for name in _daemon_names(layout):
            procs.stop(layout, name)
    if "slurm" in changed:
        for name in _daemon_names(layout)[:-1]:
            procs.stop(layout, name)
    if "slurmdbd" in changed:
        procs.stop(layout, f"{CLUSTER}-slurmdbd")
    if procs.running(layout, f"{CLUSTER}-slurmdbd") is None:
        _grant_db_user(layout)
    procs.start_and_wait(layout, slurmdbd(layout), lambda: probe_slurmdbd(layout), 180)
    _register_accounting(layout)
    procs.start_and_wait(layout, slurmctld(layout), lambda: probe_slurmctld(layout), 90)
    _up_nodes(layout)
    token = mint_token(layout, "root", 600)
    procs.start_and_wait(layout, slurmrestd(layout), lambda: probe_restd(layout, token), 60)


def _cancel_all_jobs(layout: Layout) -> None:
    """Cancel every hpc2 job and wait for them to end: their slurmstepds would outlive slurmd."""
    if procs.running(layout, f"{CLUSTER}-slurmctld") is None:
        return
    ids = run(layout, ["squeue", "--noheader", "--format=%i"], check=False).stdout.split()
    if not ids:
        return
    run(layout, ["scancel", *ids], check=False)
    try:
        procs.wait_until(
            "hpc2's cancelled jobs to end",
            lambda: (
                not run(layout, ["squeue", "--noheader", "--states=R,CG,S", "--format=%i"]).stdout.strip()
            ),
            60,
        )
    except ClusterError as e:
        print(f"cluster down: {e}; stopping hpc2's daemons regardless", file=sys.stderr)


def down(layout: Layout) -> None:
    _cancel_all_jobs(layout)
    for name in _daemon_names(layout):
        procs.stop(layout, name)


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    out = [
        (f"{CLUSTER} slurmdbd", *_probe_daemon(layout, "slurmdbd", lambda: probe_slurmdbd(layout))),
        (f"{CLUSTER} slurmctld", *_probe_daemon(layout, "slurmctld", lambda: probe_slurmctld(layout))),
    ]
    try:
        states = node_states(layout) if procs.running(layout, f"{CLUSTER}-slurmctld") else {}
        err = "not known to slurmctld"
    except ClusterError as e:
        states, err = {}, str(e)
    for n in nodes(layout):
        row = f"{CLUSTER} slurmd {n.name}"
        if procs.running(layout, f"{CLUSTER}-slurmd-{n.name}") is None:
            out.append((row, False, "not running"))
            continue
        state, reason = states.get(n.name, ("", err))
        out.append((row, bool(state) and node_ok(state), f"{state} {reason}".strip()))
    out.append(
        (f"{CLUSTER} slurmrestd", *_probe_daemon(layout, "slurmrestd", lambda: _probe_restd_fresh(layout)))
    )
    out.append((f"{CLUSTER} apptainer", *probe_apptainer(layout)))
    return out


def _probe_restd_fresh(layout: Layout) -> tuple[bool, str]:
    try:
        token = mint_token(layout, "root", 300)
    except ClusterError as e:
        return False, f"no token: {e}"
    return probe_restd(layout, token)


def _probe_daemon(layout: Layout, name: str, probe: Probe) -> tuple[bool, str]:
    if procs.running(layout, f"{CLUSTER}-{name}") is None:
        return False, "not running"
    try:
        return probe()
    except Exception as e:  # noqa: BLE001 - a failing probe is a health result, not a crash
        return False, str(e)


def env(layout: Layout) -> dict[str, str]:
    """hpc2's variables beside hpc1's (whose names stay as they were)."""
    return {
        "SLURMRESTD_URL_HPC2": f"http://127.0.0.1:{layout.ports.hpc2_slurmrestd}",
        "SLURM_JWT_HPC2": mint_token(layout, "root", TOKEN_LIFESPAN_S),
        "SLURM_CLUSTER_HPC2": CLUSTER,
        # runs one of hpc2's commands (sid's sbatch, squeue, sacct, scontrol ...) in its root
        "CONVERGED_HPC2_EXEC": f"{HERE / 'cluster'} hpc2-exec",
    }
