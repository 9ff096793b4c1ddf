"""The local Slurm cluster's shape: its name, users, nodes, partitions and where its state lives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..layout import Layout

CLUSTER = "converged"
ACCOUNT = "default"
STEP_USERS = ("alice", "bob")  # separate Unix users for steps of different namespaces
SLURM_USER = "slurm"
MUNGE_USER = "munge"
MYSQL_USER = "mysql"
RESTD_USER = "nobody"
API_VERSION = "v0.0.38"
OPENAPI_PLUGINS = f"openapi/{API_VERSION},openapi/db{API_VERSION}"
TOKEN_LIFESPAN_S = 30 * 24 * 3600  # the token env() hands out

ETC = Path("/etc/slurm")
SLURM_CONF = ETC / "slurm.conf"
GRES_CONF = ETC / "gres.conf"
CGROUP_CONF = ETC / "cgroup.conf"
SLURMDBD_CONF = ETC / "slurmdbd.conf"
MUNGE_RUN = Path("/run/munge")  # default socket dir: munge/unmunge and Slurm find it unconfigured


@dataclass(frozen=True)
class Node:
    name: str
    partition: str
    port: int
    gres: str = ""  # e.g. "gpu:a100:2"


@dataclass(frozen=True)
class Partition:
    name: str
    max_time: str
    default: bool = False


PARTITIONS = (Partition("cpu", "1-00:00:00", default=True), Partition("gpu", "12:00:00"))
NODE_CPUS = 4
NODE_MEMORY_MIB = 7900
GPUS_PER_NODE = 2


def nodes(layout: Layout) -> list[Node]:
    base = layout.ports.slurmd_base
    return [
        Node("c1", "cpu", base),
        Node("c2", "cpu", base + 1),
        Node("g1", "gpu", base + 2, gres=f"gpu:a100:{GPUS_PER_NODE}"),
    ]


# ---------------------------------------------------------------- paths


@dataclass(frozen=True)
class Paths:
    base: Path

    @property
    def munge(self) -> Path:
        return self.base / "munge"

    @property
    def munge_key(self) -> Path:
        return self.munge / "munge.key"

    @property
    def mariadb(self) -> Path:
        return self.base / "mariadb"

    @property
    def mariadb_data(self) -> Path:
        return self.mariadb / "data"

    @property
    def mariadb_socket(self) -> Path:
        return self.mariadb / "mariadb.sock"

    @property
    def mariadb_cnf(self) -> Path:
        return self.base / "etc" / "mariadb.cnf"

    @property
    def db_password(self) -> Path:
        return self.base / "etc" / "db-password"

    @property
    def jwt_key(self) -> Path:
        return self.base / "jwt" / "jwt_hs256.key"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def spool(self) -> Path:
        return self.base / "spool"

    @property
    def pids(self) -> Path:
        """Pid files the Slurm daemons write themselves (ours are in layout.run)."""
        return self.base / "run"

    @property
    def dev(self) -> Path:
        return self.base / "dev"

    def gpu_files(self) -> list[Path]:
        return [self.dev / f"nvidia{i}" for i in range(GPUS_PER_NODE)]


def paths(layout: Layout) -> Paths:
    return Paths(layout.component_dir("slurm"))
