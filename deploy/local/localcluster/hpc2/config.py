"""hpc2's slurm.conf, cgroup.conf and slurmdbd.conf, rendered from its shape (pure), and the state
directories they point at."""

from __future__ import annotations

from ..layout import HERE, Layout
from ..slurm.config import build_slurmdbd_conf
from ..slurm.files import mkdir, secret, write
from .root import build_enter_script, root_spec
from .shape import CLUSTER, DB_NAME, DB_USER, PARTITIONS, SLURM_USER, nodes, paths


def slurm_conf(layout: Layout) -> str:
    p = paths(layout)
    lines = [
        "# Written by deploy/local/localcluster/hpc2; edits are overwritten.",
        f"ClusterName={CLUSTER}",
        "SlurmctldHost=localhost",
        f"SlurmctldPort={layout.ports.hpc2_slurmctld}",
        f"SlurmUser={SLURM_USER}",
        "SlurmdUser=root",
        "AuthType=auth/munge",  # the host's munged, through /run/munge
        "CredType=cred/munge",
        "AuthAltTypes=auth/jwt",
        f"AuthAltParameters=jwt_key={p.jwt_key}",
        f"StateSaveLocation={p.state}",
        f"SlurmdSpoolDir={p.spool}/%n",
        f"SlurmctldPidFile={p.pids}/slurmctld.pid",
        f"SlurmdPidFile={p.pids}/slurmd-%n.pid",
        f"SlurmdLogFile={p.log}/slurmstepd-%n.log",
        "SlurmdParameters=config_overrides",  # nodes claim more than the host has
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000,bf_interval=5",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=512",
        "AccountingStorageType=accounting_storage/slurmdbd",
        "AccountingStorageHost=localhost",
        f"AccountingStoragePort={layout.ports.hpc2_slurmdbd}",
        "AccountingStoreFlags=job_comment",  # the exactly-once marker in accounting too
        "JobAcctGatherType=jobacct_gather/linux",
        "JobAcctGatherFrequency=30",
        "MessageTimeout=10",
        "KillWait=5",
        "InactiveLimit=0",
        "MinJobAge=300",  # Slurm's default, as on hpc1
        "SlurmctldTimeout=30",
        "SlurmdTimeout=60",
        "MailProg=/bin/true",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
    ]
    for n in nodes(layout):
        lines.append(
            f"NodeName={n.name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={n.port} "
            f"CPUs={n.cpus} RealMemory={n.memory_mib} State=UNKNOWN"
        )
    for part in PARTITIONS:
        members = ",".join(n.name for n in nodes(layout) if part.name in n.partitions)
        default = " Default=YES" if part.default else ""
        lines.append(f"PartitionName={part.name} Nodes={members}{default} MaxTime={part.max_time} State=UP")
    return "\n".join(lines) + "\n"


def cgroup_conf() -> str:
    # no cgroup-based proctrack or task plugin; `disabled` exists since 23.02 (22.05 on hpc1 needs v1)
    return "CgroupPlugin=disabled\n"


def slurmdbd_conf(layout: Layout, password: str) -> str:
    """hpc2's slurmdbd keeps its accounts in hpc1's MariaDB (10.11, bookworm), in a database and under a
    user of its own."""
    p = paths(layout)
    return build_slurmdbd_conf(
        written_by="deploy/local/localcluster/hpc2",
        jwt_key=str(p.jwt_key),
        port=layout.ports.hpc2_slurmdbd,
        pid_file=f"{p.pids}/slurmdbd.pid",
        mariadb_port=layout.ports.mariadb,
        db_user=DB_USER,
        password=password,
        database=DB_NAME,
    )


def prepare(layout: Layout) -> set[str]:
    """Directories, secrets and configs. Returns the groups whose config changed: "slurmdbd",
    "slurm" (slurmctld, slurmd, slurmrestd), "root" (every daemon: the root's binds)."""
    p = paths(layout)
    layout.ensure()
    mkdir(p.base, None, 0o755)
    mkdir(p.etc, None, 0o755)
    password = secret(p.db_password, 24, None, 0o600, text=True).decode()
    mkdir(p.jwt_key.parent, SLURM_USER, 0o700)
    secret(p.jwt_key, 64, SLURM_USER, 0o400)
    mkdir(p.state, SLURM_USER, 0o700)
    mkdir(p.spool, None, 0o755)
    mkdir(p.log, None, 0o755)
    mkdir(p.pids, SLURM_USER, 0o755)
    mkdir(p.tmp("x").parent, None, 0o755)
    for n in nodes(layout):
        mkdir(p.tmp(n.name), None, 0o1777)
        mkdir(p.spool / n.name, None, 0o755)
    mkdir(layout.shared, None, 0o1777)
    # sid's apptainer.conf allows setuid and gives root full capabilities; hpc2 runs hpc1's settings
    write(p.apptainer_conf, (HERE / "apptainer.conf").read_bytes(), None, 0o644)
    changed: set[str] = set()
    # what every daemon's root is made of (binds): its daemons see a new one only when restarted
    if write(p.base / "enter-root.sh", build_enter_script(root_spec(layout)), None, 0o644):
        changed.add("root")
    if write(p.etc / "slurmdbd.conf", slurmdbd_conf(layout, password), SLURM_USER, 0o600):
        changed.add("slurmdbd")
    if any([write(p.etc / "slurm.conf", slurm_conf(layout)), write(p.etc / "cgroup.conf", cgroup_conf())]):
        changed.add("slurm")
    return changed
