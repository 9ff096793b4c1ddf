"""Slurm 22.05 (Debian bookworm) on loopback: munged, MariaDB, slurmdbd, slurmctld,
three virtual slurmd nodes (c1, c2 in `cpu`; g1 with two fake A100s in `gpu`) and slurmrestd
with JWT authentication.

Every daemon runs in the foreground, started and stopped through `procs` (pid files, never
process names). State lives under layout.component_dir("slurm"); the Slurm configuration
lives in /etc/slurm so that sbatch/srun/scontrol find it without SLURM_CONF.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import packages, procs
from .layout import Layout
from .procs import ClusterError, Daemon

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
]

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


# ---------------------------------------------------------------- files


def _ids(user: str) -> tuple[int, int]:
    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid


def _own(path: Path, user: str | None, mode: int) -> None:
    if user is not None:
        uid, gid = _ids(user)
        st = path.stat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
    if path.stat().st_mode & 0o7777 != mode:
        os.chmod(path, mode)


def _mkdir(path: Path, user: str | None = None, mode: int = 0o755) -> None:
    path.mkdir(parents=True, exist_ok=True)
    _own(path, user, mode)


def _write(path: Path, content: str | bytes, user: str | None = None, mode: int = 0o644) -> bool:
    """Write `content` atomically unless it is already there; fix owner and mode. True if changed."""
    data = content.encode() if isinstance(content, str) else content
    try:
        changed = path.read_bytes() != data
    except FileNotFoundError:
        changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _own(tmp, user, mode)
        os.replace(tmp, path)
    else:
        _own(path, user, mode)
    return changed


def _secret(path: Path, nbytes: int, user: str | None, mode: int = 0o400, text: bool = False) -> bytes:
    """A random secret generated once and kept (the munge key, the JWT key, the DB password)."""
    if not path.exists():
        raw = os.urandom(nbytes)
        _write(path, raw.hex() if text else raw, user, mode)
    _own(path, user, mode)
    return path.read_bytes()


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
    return (
        "\n".join(
            [
                "# Written by deploy/local/localcluster/slurm.py; edits are overwritten.",
                "AuthType=auth/munge",
                "AuthAltTypes=auth/jwt",
                f"AuthAltParameters=jwt_key={p.jwt_key}",
                "DbdHost=localhost",
                f"DbdPort={layout.ports.slurmdbd}",
                f"SlurmUser={SLURM_USER}",
                f"PidFile={p.pids}/slurmdbd.pid",
                "DebugLevel=info",
                "StorageType=accounting_storage/mysql",
                "StorageHost=127.0.0.1",
                f"StoragePort={layout.ports.mariadb}",
                f"StorageUser={SLURM_USER}",
                f"StoragePass={password}",
                "StorageLoc=slurm_acct_db",
            ]
        )
        + "\n"
    )


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


def _prepare(layout: Layout) -> set[str]:
    """Create directories, secrets and configs. Returns the groups whose config changed:
    "mariadb", "slurmdbd", "slurm" (slurmctld, slurmd, slurmrestd)."""
    p = paths(layout)
    layout.ensure()
    _mkdir(p.base)
    _mkdir(p.munge, MUNGE_USER, 0o700)
    _secret(p.munge_key, 128, MUNGE_USER, 0o400)
    _mkdir(MUNGE_RUN, MUNGE_USER, 0o755)
    _mkdir(p.jwt_key.parent, SLURM_USER, 0o700)
    _secret(p.jwt_key, 64, SLURM_USER, 0o400)
    _mkdir(p.mariadb, MYSQL_USER, 0o750)
    _mkdir(p.base / "etc", None, 0o755)
    password = _secret(p.db_password, 24, None, 0o600, text=True).decode()
    _mkdir(p.state, SLURM_USER, 0o700)
    _mkdir(p.spool, None, 0o755)
    _mkdir(p.pids, SLURM_USER, 0o755)
    _mkdir(p.dev, None, 0o755)
    _fake_gpus(p)
    _mkdir(layout.shared, None, 0o1777)
    _mkdir(ETC, None, 0o755)
    changed: set[str] = set()
    if _write(p.mariadb_cnf, mariadb_cnf(layout)):
        changed.add("mariadb")
    if _write(SLURMDBD_CONF, slurmdbd_conf(layout, password), SLURM_USER, 0o600):
        changed.add("slurmdbd")
    slurm_changed = [
        _write(SLURM_CONF, slurm_conf(layout)),
        _write(GRES_CONF, gres_conf(layout)),
        _write(CGROUP_CONF, cgroup_conf()),
    ]
    if any(slurm_changed):
        changed.add("slurm")
    return changed


# ---------------------------------------------------------------- daemons


def _slurmd_name(node: Node) -> str:
    return f"slurmd-{node.name}"


def _munged(layout: Layout) -> Daemon:
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


def _mariadbd(layout: Layout) -> Daemon:
    return Daemon("mariadb", ["mariadbd", f"--defaults-file={paths(layout).mariadb_cnf}"], user=MYSQL_USER)


def _slurmdbd() -> Daemon:
    return Daemon("slurmdbd", ["slurmdbd", "-D"], user=SLURM_USER)


def _slurmctld() -> Daemon:
    return Daemon("slurmctld", ["slurmctld", "-D", "-i"], user=SLURM_USER)


def _slurmd(node: Node) -> Daemon:
    return Daemon(_slurmd_name(node), ["slurmd", "-D", "-N", node.name])


def _slurmrestd(layout: Layout) -> Daemon:
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


# ---------------------------------------------------------------- probes

Probe = Callable[[], tuple[bool, str]]
Check = Callable[[], bool]


def _ok(argv: list[str], input: str | None = None, timeout: float = 15) -> tuple[bool, str]:
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    out = (cp.stdout.strip() or cp.stderr.strip())[-500:]
    return cp.returncode == 0, out


def probe_munge() -> tuple[bool, str]:
    ok, cred = _ok(["munge", "-n"])
    if not ok:
        return False, cred
    ok, out = _ok(["unmunge"], input=cred + "\n")
    status = next((ln for ln in out.splitlines() if ln.startswith("STATUS:")), out)
    return ok and "Success" in status, status.replace("STATUS:", "").strip()


def probe_mariadb(layout: Layout) -> tuple[bool, str]:
    ok, out = _ok(["mariadb-admin", f"--socket={paths(layout).mariadb_socket}", "-uroot", "ping"])
    return ok and "alive" in out, out


def probe_slurmdbd() -> tuple[bool, str]:
    ok, out = _ok(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"])
    if not ok:
        return False, out
    return True, f"clusters: {out.replace(chr(10), ',') or '(none)'}"


def probe_slurmctld() -> tuple[bool, str]:
    ok, out = _ok(["scontrol", "ping"])
    return ok and "UP" in out, out


BAD_NODE_STATES = ("DOWN", "NOT_RESPONDING", "UNKNOWN", "FAIL", "INVAL", "REBOOT", "POWER")


def node_states() -> dict[str, tuple[str, str]]:
    """{node: (State, Reason)} from one `scontrol show node -o`."""
    cp = subprocess.run(["scontrol", "show", "node", "-o"], capture_output=True, text=True, timeout=15)
    if cp.returncode != 0:
        raise ClusterError(f"scontrol show node failed: {cp.stderr.strip()}")
    out: dict[str, tuple[str, str]] = {}
    for line in cp.stdout.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        reason = line.split("Reason=", 1)[1] if "Reason=" in line else ""
        if "NodeName" in fields:
            out[fields["NodeName"]] = (fields.get("State", "?"), reason)
    return out


def _node_ok(state: str) -> bool:
    return not any(bad in state for bad in BAD_NODE_STATES)


def probe_restd(layout: Layout, token: str) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{layout.ports.slurmrestd}/slurm/{API_VERSION}/ping"
    req = urllib.request.Request(url, headers={"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": token})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - fixed http://127.0.0.1 URL
            body = json.load(r)
    except (OSError, ValueError) as e:
        return False, str(e)
    pings = body.get("pings", [])
    errors = body.get("errors", [])
    if errors or not pings:
        return False, json.dumps(errors or body)[:300]
    return True, ", ".join(f"{p.get('hostname')} {p.get('ping')}" for p in pings)


# ---------------------------------------------------------------- mariadb + accounting


def _mariadb_initialised(layout: Layout) -> Path:
    return paths(layout).mariadb / ".initialised"


def _init_mariadb(layout: Layout) -> None:
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


def _grant_slurm_db_user(layout: Layout) -> None:
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


def _register_accounting() -> None:
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


def _ensure_step_users() -> None:
    """Unix users that steps of different namespaces run as (the identity tests map them)."""
    for user in STEP_USERS:
        if subprocess.run(["getent", "passwd", user], capture_output=True).returncode != 0:
            procs.run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", user])


# ---------------------------------------------------------------- public API


def mint_token(user: str, lifespan_s: int = 3600) -> str:
    """A Slurm JWT for `user` (we are root, so any user)."""
    cp = procs.run(["scontrol", "token", f"username={user}", f"lifespan={lifespan_s}"])
    for line in cp.stdout.splitlines():
        if line.startswith("SLURM_JWT="):
            return line.split("=", 1)[1].strip()
    raise ClusterError(f"scontrol token printed no SLURM_JWT: {cp.stdout.strip()[:200]}")


def env(layout: Layout) -> dict[str, str]:
    return {
        "SLURMRESTD_URL": f"http://127.0.0.1:{layout.ports.slurmrestd}",
        "SLURM_JWT": mint_token("root", TOKEN_LIFESPAN_S),
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
    return ["slurmrestd", *(_slurmd_name(n) for n in nodes(layout)), "slurmctld"]


def _up_nodes(layout: Layout) -> None:
    for n in nodes(layout):
        _mkdir(paths(layout).spool / n.name, None, 0o755)
        procs.start(layout, _slurmd(n))
    names = [n.name for n in nodes(layout)]

    def all_ok() -> bool:
        for name in names:
            if procs.running(layout, f"slurmd-{name}") is None:
                raise ClusterError(f"slurmd-{name} exited; see {procs.log_path(layout, f'slurmd-{name}')}")
        states = node_states()
        return all(_node_ok(states.get(name, ("UNKNOWN", ""))[0]) for name in names)

    _wait_or_raise(layout, "slurmd", all_ok, 90, [f"slurmd-{n}" for n in names])


def _wait_or_raise(layout: Layout, what: str, check: Check, timeout: float, logs: list[str]) -> None:
    """wait_until, but a ClusterError raised by the probe ends the wait at once."""
    fatal: list[ClusterError] = []

    def probe() -> bool:
        try:
            return bool(check())
        except ClusterError as e:
            fatal.append(e)
            return True

    where = ", ".join(str(procs.log_path(layout, n)) for n in logs)
    try:
        procs.wait_until(what, probe, timeout)
    except ClusterError as e:
        raise ClusterError(f"{e}; see {where}") from None
    if fatal:
        raise fatal[0]


def _start_and_wait(layout: Layout, d: Daemon, probe: Probe, timeout: float) -> None:
    procs.start(layout, d)

    def check() -> bool:
        if procs.running(layout, d.name) is None:
            raise ClusterError(f"{d.name} exited; see {procs.log_path(layout, d.name)}")
        return probe()[0]

    _wait_or_raise(layout, d.name, check, timeout, [d.name])


def up(layout: Layout) -> None:
    """Bring Slurm up (idempotent): packages, configs, daemons, accounting, health."""
    packages.ensure(PACKAGES)
    changed = _prepare(layout)
    _restart(layout, changed)
    _start_and_wait(layout, _munged(layout), probe_munge, 30)
    _init_mariadb(layout)
    _start_and_wait(layout, _mariadbd(layout), lambda: probe_mariadb(layout), 90)
    if "mariadb" in changed or procs.running(layout, "slurmdbd") is None:
        _grant_slurm_db_user(layout)
    _start_and_wait(layout, _slurmdbd(), probe_slurmdbd, 180)
    _ensure_step_users()
    _register_accounting()
    _start_and_wait(layout, _slurmctld(), probe_slurmctld, 90)
    _up_nodes(layout)
    token = mint_token("root", 600)
    _start_and_wait(layout, _slurmrestd(layout), lambda: probe_restd(layout, token), 60)


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
    procs.wait_until(
        "cancelled jobs to end",
        lambda: not procs.run(["squeue", "--noheader", "--states=R,CG,S", "--format=%i"]).stdout.strip(),
        60,
        procs.log_path(layout, "slurmctld"),
    )


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
        if procs.running(layout, _slurmd_name(n)) is None:
            out.append((component, False, "not running"))
            continue
        state, reason = states.get(n.name, ("", err))
        out.append((component, bool(state) and _node_ok(state), f"{state} {reason}".strip()))
    out.append(("slurmrestd", *_probe_daemon(layout, "slurmrestd", lambda: _probe_restd_fresh(layout))))
    return out


def _probe_restd_fresh(layout: Layout) -> tuple[bool, str]:
    try:
        token = mint_token("root", 300)
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
