"""Accounting: MariaDB initialised once, slurmdbd's database user, the cluster, account and step users
registered with sacctmgr."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .. import procs
from ..layout import Layout
from .site import ACCOUNT, CLUSTER, MYSQL_USER, SLURM_USER, STEP_USERS, paths

# ---------------------------------------------------------------- mariadb + accounting


def _mariadb_initialised(layout: Layout) -> Path:
    return paths(layout).mariadb / ".initialised"


def init_mariadb(layout: Layout) -> None:
    p = paths(layout)
    if _mariadb_initialised(layout).exists():
        return
    if p.mariadb_data.exists():
        shutil.rmtree(p.mariadb_data)  # a half-done earlier attempt
    procs.run(
        [
            "mariadb-install-db",
            f"--defaults-file={p.mariadb_cnf}",
            f"--user={MYSQL_USER}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ],
        timeout=300,
    )
    _mariadb_initialised(layout).write_text("")


def _sql(layout: Layout, statements: str) -> None:
    procs.run(["mariadb", f"--socket={paths(layout).mariadb_socket}", "-uroot", "--batch"], input=statements)


def grant_slurm_db_user(layout: Layout) -> None:
    pw = paths(layout).db_password.read_text().strip()
    _sql(
        layout,
        "\n".join(
            [
                f"CREATE USER IF NOT EXISTS '{SLURM_USER}'@'localhost' IDENTIFIED BY '{pw}';",
                f"CREATE USER IF NOT EXISTS '{SLURM_USER}'@'127.0.0.1' IDENTIFIED BY '{pw}';",
                f"ALTER USER '{SLURM_USER}'@'localhost' IDENTIFIED BY '{pw}';",
                f"ALTER USER '{SLURM_USER}'@'127.0.0.1' IDENTIFIED BY '{pw}';",
                f"GRANT ALL ON slurm_acct_db.* TO '{SLURM_USER}'@'localhost';",
                f"GRANT ALL ON slurm_acct_db.* TO '{SLURM_USER}'@'127.0.0.1';",
                "FLUSH PRIVILEGES;",
            ]
        ),
    )


def _sacctmgr_list(*args: str) -> list[str]:
    cp = procs.run(["sacctmgr", "-n", "-P", "list", *args])
    return [ln for ln in cp.stdout.splitlines() if ln.strip()]


def register_accounting() -> None:
    """Cluster, account and root's association in slurmdbd; each only if missing."""
    if CLUSTER not in _sacctmgr_list("cluster", "format=cluster"):
        procs.run(["sacctmgr", "-i", "add", "cluster", CLUSTER])
    if ACCOUNT not in _sacctmgr_list("account", ACCOUNT, "format=account"):
        procs.run(
            [
                "sacctmgr",
                "-i",
                "add",
                "account",
                ACCOUNT,
                f"cluster={CLUSTER}",
                "description=converged local",
                "organization=converged",
            ]
        )
    for user in ("root", *STEP_USERS):
        assoc = ("association", f"cluster={CLUSTER}", f"account={ACCOUNT}", f"user={user}", "format=user")
        if not _sacctmgr_list(*assoc):
            procs.run(["sacctmgr", "-i", "add", "user", user, f"account={ACCOUNT}", f"cluster={CLUSTER}"])
        if _sacctmgr_list("user", user, "format=defaultaccount") != [ACCOUNT]:
            procs.run(["sacctmgr", "-i", "modify", "user", user, "set", f"defaultaccount={ACCOUNT}"])


def ensure_step_users() -> None:
    """Unix users that steps of different namespaces run as (the identity tests map them)."""
    for user in STEP_USERS:
        if subprocess.run(["getent", "passwd", user], capture_output=True).returncode != 0:
            procs.run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", user])
