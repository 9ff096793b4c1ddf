"""slurm.conf, gres.conf, cgroup.conf, slurmdbd.conf and MariaDB's config, rendered from the site (pure),
and the state directories and fake GPU device nodes they point at."""

from __future__ import annotations

import os
import stat

from ..layout import Layout
from .files import mkdir, secret, write
from .site import (
    CGROUP_CONF,
    CLUSTER,
    ETC,
    GRES_CONF,
    MUNGE_RUN,
    MUNGE_USER,
    MYSQL_USER,
    NODE_CPUS,
    NODE_MEMORY_MIB,
    PARTITIONS,
    SLURM_CONF,
    SLURM_USER,
    SLURMDBD_CONF,
    Paths,
    nodes,
    paths,
)

# ---------------------------------------------------------------- configuration


def slurm_conf(layout: Layout) -> str:
    p = paths(layout)
    lines = [
        "# Written by deploy/local/localcluster/slurm.py; edits are overwritten.",
        f"ClusterName={CLUSTER}",
        "SlurmctldHost=localhost",
        f"SlurmctldPort={layout.ports.slurmctld}",
        f"SlurmUser={SLURM_USER}",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "AuthAltTypes=auth/jwt",
        f"AuthAltParameters=jwt_key={p.jwt_key}",
        f"StateSaveLocation={p.state}",
        f"SlurmdSpoolDir={p.spool}/%n",
        f"SlurmctldPidFile={p.pids}/slurmctld.pid",
        f"SlurmdPidFile={p.pids}/slurmd-%n.pid",
        "SlurmdParameters=config_overrides",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000,bf_interval=5,defer_batch",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=512",
        "GresTypes=gpu",
        "AccountingStorageType=accounting_storage/slurmdbd",
        "AccountingStorageHost=localhost",
        f"AccountingStoragePort={layout.ports.slurmdbd}",
        "AccountingStorageTRES=gres/gpu,gres/gpu:a100",
        "JobAcctGatherType=jobacct_gather/linux",
        "JobAcctGatherFrequency=30",
        "MessageTimeout=10",
        "KillWait=5",
        "InactiveLimit=0",
        # Slurm's default, as sites run it: finished jobs stay in squeue/slurmrestd listings for 5 min,
        # far longer than a controller poll. An hour made every GET /jobs carry thousands of old jobs
        # after the benchmarks (15 MB per listing), and slurmrestd 22.05 keeps ~30 MB per such answer
        "MinJobAge=300",
        # keep --comment (converged:<step uid>, the exactly-once marker) in accounting too
        "AccountingStoreFlags=job_comment",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=60",
        "MailProg=/bin/true",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        # slurmd -D logs to its stderr (logs/slurmd-<node>.log); its slurmstepds log only here
        f"SlurmdLogFile={paths(layout).base / 'log' / 'slurmstepd-%n.log'}",
    ]
    for n in nodes(layout):
        gres = f" Gres={n.gres}" if n.gres else ""
        lines.append(
            f"NodeName={n.name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={n.port} "
            f"CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MIB}{gres} State=UNKNOWN"
        )
    for part in PARTITIONS:
        members = ",".join(n.name for n in nodes(layout) if n.partition == part.name)
        default = " Default=YES" if part.default else ""
        lines.append(f"PartitionName={part.name} Nodes={members}{default} MaxTime={part.max_time} State=UP")
    return "\n".join(lines) + "\n"


def gres_conf(layout: Layout) -> str:
    files = paths(layout).gpu_files()
    lines = ["# Fake GPUs: device nodes c 195:N with no driver behind them stand in for /dev/nvidia*."]
    for n in nodes(layout):
        if n.gres:
            lines.append(f"NodeName={n.name} Name=gpu Type=a100 File={','.join(map(str, files))}")
    return "\n".join(lines) + "\n"


def cgroup_conf() -> str:
    # slurmd 22.05 always loads a cgroup plugin (there is no "disabled" before 23.02); this host
    # mounts cgroup v1 controllers, and no cgroup-based proctrack/task plugin is configured.
    return "CgroupPlugin=cgroup/v1\n"


def slurmdbd_conf(layout: Layout, password: str) -> str:
    p = paths(layout)
    return build_slurmdbd_conf(
        written_by="deploy/local/localcluster/slurm",
        jwt_key=str(p.jwt_key),
        port=layout.ports.slurmdbd,
        pid_file=f"{p.pids}/slurmdbd.pid",
        mariadb_port=layout.ports.mariadb,
        db_user=SLURM_USER,
        password=password,
        database="slurm_acct_db",
    )


def build_slurmdbd_conf(
    *,
    written_by: str,
    jwt_key: str,
    port: int,
    pid_file: str,
    mariadb_port: int,
    db_user: str,
    password: str,
    database: str,
) -> str:
    """slurmdbd.conf for a slurmdbd that runs as SlurmUser and keeps its accounts in the local MariaDB
    (hpc1's, on 127.0.0.1) under `database`; munge for daemons, JWTs (signed with `jwt_key`) for
    slurmrestd."""
    lines = [
        f"# Written by {written_by}; edits are overwritten.",
        "AuthType=auth/munge",
        "AuthAltTypes=auth/jwt",
        f"AuthAltParameters=jwt_key={jwt_key}",
        "DbdHost=localhost",
        f"DbdPort={port}",
        f"SlurmUser={SLURM_USER}",
        f"PidFile={pid_file}",
        "DebugLevel=info",
        "StorageType=accounting_storage/mysql",
        "StorageHost=127.0.0.1",
        f"StoragePort={mariadb_port}",
        f"StorageUser={db_user}",
        f"StoragePass={password}",
        f"StorageLoc={database}",
    ]
    return "\n".join(lines) + "\n"


def mariadb_cnf(layout: Layout) -> str:
    p = paths(layout)
    return (
        "\n".join(
            [
                "[mariadbd]",
                f"datadir={p.mariadb_data}",
                f"socket={p.mariadb_socket}",
                f"pid-file={p.mariadb}/mariadbd.pid",
                f"port={layout.ports.mariadb}",
                "bind-address=127.0.0.1",
                "skip-name-resolve",
                "skip-log-bin",
                "innodb_buffer_pool_size=1024M",
                "innodb_log_file_size=64M",
                "innodb_lock_wait_timeout=900",
                "max_allowed_packet=64M",
                "[client]",
                f"socket={p.mariadb_socket}",
                f"port={layout.ports.mariadb}",
            ]
        )
        + "\n"
    )


NVIDIA_MAJOR = 195  # the real driver's major number; with no driver loaded, open() fails with ENXIO


def _fake_gpus(p: Paths) -> None:
    """Device nodes c 195:i (what /dev/nvidia<i> would be). slurmd's gres/gpu wants a character
    device to set CUDA_VISIBLE_DEVICES; a plain file is still counted, but without the index."""
    for i, f in enumerate(p.gpu_files()):
        if f.exists() or f.is_symlink():
            continue
        try:
            os.mknod(f, 0o600 | stat.S_IFCHR, os.makedev(NVIDIA_MAJOR, i))
        except PermissionError:
            f.touch(0o600)


def prepare(layout: Layout) -> set[str]:
    """Create directories, secrets and configs. Returns the groups whose config changed:
    "mariadb", "slurmdbd", "slurm" (slurmctld, slurmd, slurmrestd)."""
    p = paths(layout)
    layout.ensure()
    mkdir(p.base)
    mkdir(p.munge, MUNGE_USER, 0o700)
    secret(p.munge_key, 128, MUNGE_USER, 0o400)
    mkdir(MUNGE_RUN, MUNGE_USER, 0o755)
    mkdir(p.jwt_key.parent, SLURM_USER, 0o700)
    secret(p.jwt_key, 64, SLURM_USER, 0o400)
    mkdir(p.mariadb, MYSQL_USER, 0o750)
    mkdir(p.base / "etc", None, 0o755)
    password = secret(p.db_password, 24, None, 0o600, text=True).decode()
    mkdir(p.state, SLURM_USER, 0o700)
    mkdir(p.spool, None, 0o755)
    mkdir(p.base / "log", None, 0o755)
    mkdir(p.pids, SLURM_USER, 0o755)
    mkdir(p.dev, None, 0o755)
    _fake_gpus(p)
    mkdir(layout.shared, None, 0o1777)
    mkdir(ETC, None, 0o755)
    changed: set[str] = set()
    if write(p.mariadb_cnf, mariadb_cnf(layout)):
        changed.add("mariadb")
    if write(SLURMDBD_CONF, slurmdbd_conf(layout, password), SLURM_USER, 0o600):
        changed.add("slurmdbd")
    slurm_changed = [
        write(SLURM_CONF, slurm_conf(layout)),
        write(GRES_CONF, gres_conf(layout)),
        write(CGROUP_CONF, cgroup_conf()),
    ]
    if any(slurm_changed):
        changed.add("slurm")
    return changed
