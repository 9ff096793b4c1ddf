"""hpc2's shape: its name, nodes, partitions, users, and where its state lives.

Laid out unlike hpc1 on purpose (what a second site cluster looks like): two 8-CPU nodes in both the
default partition `cpu` (1 day) and `long` (7 days), as sites overlap their partitions, and one big
memory node alone in `bigmem`; no GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..layout import Layout

CLUSTER = "hpc2"  # Slurm's ClusterName, the SlurmCluster's name, the accounting cluster
ACCOUNT = "default"
STEP_USERS = ("alice", "bob")  # the host's users: /etc/passwd is bound into the root
SLURM_USER = "slurm"
RESTD_USER = "nobody"
RESTD_GROUP = "nogroup"
DB_USER = "slurm_hpc2"  # on the host's MariaDB, beside hpc1's `slurm`
DB_NAME = "slurm_hpc2_acct_db"
TOKEN_LIFESPAN_S = 30 * 24 * 3600  # the tokens env() and the site hand out


@dataclass(frozen=True)
class Node:
    name: str
    partitions: tuple[str, ...]
    port: int
    cpus: int
    memory_mib: int


@dataclass(frozen=True)
class Partition:
    name: str
    max_time: str
    default: bool = False


PARTITIONS = (
    Partition("cpu", "1-00:00:00", default=True),
    Partition("long", "7-00:00:00"),
    Partition("bigmem", "2-00:00:00"),
)


def nodes(layout: Layout) -> list[Node]:
    """Claimed sizes (SlurmdParameters=config_overrides): nothing here allocates what it claims."""
    base = layout.ports.hpc2_slurmd_base
    return [
        Node("h2n1", ("cpu", "long"), base, cpus=8, memory_mib=15800),
        Node("h2n2", ("cpu", "long"), base + 1, cpus=8, memory_mib=15800),
        Node("h2big", ("bigmem",), base + 2, cpus=8, memory_mib=257000),
    ]


@dataclass(frozen=True)
class Paths:
    """hpc2's state on the host, bound into its root at the same path."""

    base: Path

    @property
    def etc(self) -> Path:
        """Bound on /etc/slurm in the root: slurm.conf, cgroup.conf, slurmdbd.conf."""
        return self.base / "etc"

    @property
    def apptainer_conf(self) -> Path:
        """The local cluster's apptainer.conf (deploy/local/apptainer.conf, as on hpc1), bound over sid's."""
        return self.base / "apptainer.conf"

    @property
    def db_password(self) -> Path:
        return self.base / "db-password"

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
    def log(self) -> Path:
        """slurmstepd logs (the daemons log to the cluster's logs/ through procs)."""
        return self.base / "log"

    @property
    def pids(self) -> Path:
        """Pid files the Slurm daemons write themselves (ours are in layout.run)."""
        return self.base / "run"

    def tmp(self, name: str) -> Path:
        """The /tmp of one node (its slurmd and jobs)."""
        return self.base / "tmp" / name


def paths(layout: Layout) -> Paths:
    return Paths(layout.component_dir(CLUSTER))
