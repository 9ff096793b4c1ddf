#!/usr/bin/env bash
# Capture real Slurm 26.05 output (Debian sid packages) into this folder.
#
# Run as root on a Debian host with network access to deb.debian.org:
#     bash tests/data/slurm-26.05/capture.sh
#
# What it does:
#   1. debootstraps a sid root filesystem into $CAPTURE_ROOT (default
#      /var/lib/converged-capture/sid; reused when already there) and installs
#      munge, MariaDB, slurmdbd, slurmctld, slurmd, slurmrestd and slurm-client inside;
#   2. mounts /proc, /sys (read-only) and a /dev/shm tmpfs into it; its /dev is the
#      static one debootstrap created, its /run (munge socket) is its own;
#   3. writes a fresh cluster `capture26` under /var/lib/capture inside the chroot
#      (state is wiped on every run, so job ids start at 1): munged, mariadbd (port 26830),
#      slurmdbd (26819), slurmctld (26817), slurmd c1/c2/c3 (partition cpu) and g1 (partition gpu,
#      Gres=gpu:a100:2 on fake device nodes c 195:N) on ports 27001-27004, and slurmrestd
#      (rest_auth/jwt, every openapi/data_parser plugin it has) on 127.0.0.1:26820;
#   4. runs capture.py (host python3, stdlib only), which submits the jobs and writes the files;
#   5. cancels what is left, stops every daemon it started (by pid), unmounts.
#
# Nothing here touches the host's own Slurm/munge: everything runs under `chroot`, and the only
# host resources shared are the loopback ports above.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=${CAPTURE_WORK:-/var/lib/converged-capture}
ROOT=${CAPTURE_ROOT:-$WORK/sid}
OUT=${CAPTURE_OUT:-$HERE}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=sid
RUN=$WORK/run # host side: daemon pids and logs of this run
S=/var/lib/capture # inside the chroot: all cluster state

CLUSTER=capture26
PORT_SLURMCTLD=26817
PORT_SLURMDBD=26819
PORT_RESTD=26820
PORT_MARIADB=26830
SLURMD_PORT_BASE=27001 # c1, c2, g1, c3
DATA_PARSERS=v0.0.42,v0.0.43,v0.0.44,v0.0.45 # every data_parser plugin 26.05 ships

# slurmdbd's MariaDB client library. sid's libmariadb3 1:11.8.9 (Connector/C 3.4.10) fails slurmdbd
# 26.05.5 at its first query (`select @var := concat('')` -> error 5027 "Number of columns in result
# (=1) set execeeds maxmimum allowed number of columns (=0)", then fatal); bookworm's libmariadb3
# (Connector/C 3.3) works against the same server. It is unpacked to /opt/libmariadb-$LIBMARIADB_FROM
# in the chroot and only slurmdbd loads it (LD_LIBRARY_PATH). Empty: use the chroot's own.
LIBMARIADB_FROM=${CAPTURE_LIBMARIADB_FROM-bookworm}

PACKAGES=(
  munge
  mariadb-server mariadb-client
  slurmdbd slurm-wlm-mysql-plugin
  slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin
  procps curl
)

log() { printf '[capture %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (debootstrap, chroot, mount)"

# Run a command inside the chroot with a clean environment. CH_USER=user:group to drop privileges.
ch() {
  local spec=()
  [[ -n ${CH_USER:-} ]] && spec=(--userspec="$CH_USER")
  chroot "${spec[@]}" "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 "$@"
}

# ------------------------------------------------------------------ 1. root filesystem

bootstrap() {
  if [[ -e $ROOT/.capture-packages ]] && cmp -s "$ROOT/.capture-packages" <(printf '%s\n' "${PACKAGES[@]}"); then
    log "reusing $ROOT ($(ch dpkg-query -W -f '${Version}' slurmctld))"
    return
  fi
  command -v debootstrap >/dev/null || apt-get install -y debootstrap
  local t0=$SECONDS
  if [[ ! -x $ROOT/usr/bin/apt-get ]]; then
    log "debootstrap $SUITE into $ROOT"
    rm -rf "$ROOT.tmp"
    mkdir -p "$WORK"
    debootstrap --variant=minbase "$SUITE" "$ROOT.tmp" "$MIRROR"
    mv "$ROOT.tmp" "$ROOT"
    log "debootstrap took $((SECONDS - t0)) s"
  fi
  # No service may start during package installation (there is no init in the chroot anyway).
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  mount_all
  log "installing ${PACKAGES[*]}"
  # sid's Release carries a Valid-Until a week ahead; a mirror that lags (or a clock that runs ahead)
  # makes apt refuse it as expired, so that check is off for this throw-away root only.
  ch DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false update
  ch DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}"
  printf '%s\n' "${PACKAGES[@]}" >"$ROOT/.capture-packages"
  log "root filesystem ready after $((SECONDS - t0)) s"
}

# libmariadb3 of another suite, unpacked (not installed) under /opt/libmariadb-$LIBMARIADB_FROM.
other_libmariadb() {
  [[ -z $LIBMARIADB_FROM ]] && return
  local dir=/opt/libmariadb-$LIBMARIADB_FROM
  [[ -e $ROOT$dir/libmariadb.so.3 ]] && return
  log "fetching libmariadb3 from $LIBMARIADB_FROM into $dir"
  mount_all
  local apt=/tmp/apt-$LIBMARIADB_FROM
  rm -rf "$ROOT$apt"
  mkdir -p "$ROOT$apt/lists/partial" "$ROOT$apt/archives/partial" "$ROOT$apt/deb" "$ROOT$dir"
  printf 'deb %s %s main\n' "$MIRROR" "$LIBMARIADB_FROM" >"$ROOT$apt/sources.list"
  local o=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=/nonexistent
    -o "Dir::State::lists=$apt/lists" -o "Dir::Cache::archives=$apt/archives" -o Dir::Cache::pkgcache=
    -o Dir::Cache::srcpkgcache= -o Acquire::Check-Valid-Until=false -o APT::Sandbox::User=root)
  ch apt-get "${o[@]}" update >/dev/null
  ch sh -c "cd $apt/deb && apt-get ${o[*]} download libmariadb3/$LIBMARIADB_FROM" >/dev/null
  ch sh -c "dpkg-deb -x $apt/deb/libmariadb3_*.deb $apt/x"
  cp -a "$ROOT$apt"/x/usr/lib/x86_64-linux-gnu/libmariadb.so.3* "$ROOT$apt"/x/usr/lib/x86_64-linux-gnu/libmariadb3 "$ROOT$dir/"
  ch sh -c "dpkg-deb -f $apt/deb/libmariadb3_*.deb Version" >"$ROOT$dir/VERSION"
  rm -rf "$ROOT$apt"
}

# ------------------------------------------------------------------ 2. mounts

MOUNTED=()
mount_one() { # type target [options]
  local target=$ROOT$2
  mountpoint -q "$target" && return
  mkdir -p "$target"
  mount -t "$1" ${3:+-o "$3"} "capture-$1" "$target"
  MOUNTED+=("$target")
}
mount_all() {
  mount_one proc /proc
  mount_one sysfs /sys ro,nosuid,nodev,noexec
  mount_one tmpfs /dev/shm mode=1777,size=256m
}
umount_all() {
  local t
  for t in "$ROOT/dev/shm" "$ROOT/sys" "$ROOT/proc"; do
    mountpoint -q "$t" && { umount "$t" || umount -l "$t"; }
  done
  return 0
}

# ------------------------------------------------------------------ 3. configuration

conf_slurm() {
  cat <<EOF
# Written by tests/data/slurm-26.05/capture.sh
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmctldPort=$PORT_SLURMCTLD
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$S/jwt/jwt_hs256.key
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool/%n
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd-%n.pid
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$PORT_SLURMDBD
AccountingStorageTRES=gres/gpu,gres/gpu:a100
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
MessageTimeout=10
KillWait=5
InactiveLimit=0
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
MailProg=/bin/true
SlurmctldDebug=info
SlurmdDebug=info
NodeName=c1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((SLURMD_PORT_BASE + 0)) CPUs=4 RealMemory=7900 State=UNKNOWN
NodeName=c2 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((SLURMD_PORT_BASE + 1)) CPUs=4 RealMemory=7900 State=UNKNOWN
NodeName=g1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((SLURMD_PORT_BASE + 2)) CPUs=4 RealMemory=7900 Gres=gpu:a100:2 State=UNKNOWN
NodeName=c3 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((SLURMD_PORT_BASE + 3)) CPUs=4 RealMemory=7900 State=UNKNOWN
PartitionName=cpu Nodes=c1,c2,c3 Default=YES MaxTime=1-00:00:00 State=UP
PartitionName=gpu Nodes=g1 MaxTime=12:00:00 State=UP
EOF
}

conf_slurmdbd() {
  cat <<EOF
# Written by tests/data/slurm-26.05/capture.sh
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$S/jwt/jwt_hs256.key
DbdHost=localhost
DbdPort=$PORT_SLURMDBD
SlurmUser=slurm
PidFile=$S/run/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$PORT_MARIADB
StorageUser=slurm
StoragePass=$1
StorageLoc=slurm_acct_db
EOF
}

conf_mariadb() {
  cat <<EOF
[mariadbd]
datadir=$S/mariadb/data
socket=$S/mariadb/mariadb.sock
pid-file=$S/mariadb/mariadbd.pid
port=$PORT_MARIADB
bind-address=127.0.0.1
skip-name-resolve
skip-log-bin
innodb_buffer_pool_size=256M
innodb_log_file_size=64M
innodb_lock_wait_timeout=900
innodb_snapshot_isolation=OFF
max_allowed_packet=64M
[client]
socket=$S/mariadb/mariadb.sock
port=$PORT_MARIADB
EOF
}

secret() { # path nbytes user mode [hex]
  if [[ ${5:-} == hex ]]; then
    head -c "$2" /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1"
  else
    head -c "$2" /dev/urandom >"$1"
  fi
  ch chown "$3" "${1#"$ROOT"}"
  chmod "$4" "$1"
}

prepare() {
  local d=$ROOT$S
  log "fresh cluster state in $d"
  rm -rf "$d" "$RUN"
  mkdir -p "$RUN" "$d"/{munge,jwt,state,spool/c1,spool/c2,spool/c3,spool/g1,run,dev,mariadb,shared,etc} \
    "$ROOT/run/munge" "$ROOT/etc/slurm"
  # Name resolution inside the chroot: localhost and the host name (shared UTS namespace).
  printf '127.0.0.1 localhost %s\n::1 localhost ip6-localhost\n' "$(hostname)" >"$ROOT/etc/hosts"
  ch chown munge:munge $S/munge /run/munge
  chmod 700 "$d/munge"
  chmod 755 "$ROOT/run/munge"
  secret "$d/munge/munge.key" 128 munge:munge 400
  ch chown slurm:slurm $S/jwt $S/state $S/run
  chmod 700 "$d/jwt" "$d/state"
  secret "$d/jwt/jwt_hs256.key" 64 slurm:slurm 400
  ch chown mysql:mysql $S/mariadb
  chmod 750 "$d/mariadb"
  chmod 1777 "$d/shared"
  secret "$d/etc/db-password" 24 root:root 600 hex
  # Fake GPUs: character devices 195:N (the NVIDIA major) with no driver behind them.
  mknod -m 600 "$d/dev/nvidia0" c 195 0
  mknod -m 600 "$d/dev/nvidia1" c 195 1
  conf_slurm >"$ROOT/etc/slurm/slurm.conf"
  printf '# No systemd/cgroup management in the chroot (CgroupPlugin=disabled exists since 23.02).\nCgroupPlugin=disabled\n' \
    >"$ROOT/etc/slurm/cgroup.conf"
  printf 'NodeName=g1 Name=gpu Type=a100 File=%s/dev/nvidia[0-1]\n' "$S" >"$ROOT/etc/slurm/gres.conf"
  conf_slurmdbd "$(cat "$d/etc/db-password")" >"$ROOT/etc/slurm/slurmdbd.conf"
  ch chown slurm:slurm /etc/slurm/slurmdbd.conf
  chmod 600 "$ROOT/etc/slurm/slurmdbd.conf"
  chmod 644 "$ROOT/etc/slurm/slurm.conf" "$ROOT/etc/slurm/cgroup.conf" "$ROOT/etc/slurm/gres.conf"
  conf_mariadb >"$d/etc/mariadb.cnf"
}

# ------------------------------------------------------------------ 4. daemons

STARTED=() # names, in start order
start() { # name user:group cmd...
  local name=$1 user=$2
  shift 2
  log "start $name: $*"
  local spec=()
  [[ $user != root ]] && spec=(--userspec="$user")
  # exec: the pid recorded is the daemon's own (chroot and env exec in turn).
  (exec chroot "${spec[@]}" "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 "$@") >"$RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  STARTED+=("$name")
}
alive() { local p; p=$(cat "$RUN/$1.pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }
wait_for() { # name timeout cmd... (the daemon `name` must stay alive meanwhile)
  local name=$1 timeout=$2 i
  shift 2
  for ((i = 0; i < timeout; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    alive "$name" || { tail -n 30 "$RUN/$name.log" >&2; die "$name exited"; }
    sleep 1
  done
  tail -n 30 "$RUN/$name.log" >&2
  die "$name not ready after ${timeout}s"
}
stop_one() {
  local name=$1 p i
  p=$(cat "$RUN/$name.pid" 2>/dev/null) || return 0
  if kill -0 "$p" 2>/dev/null; then
    log "stop $name (pid $p)"
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  fi
  rm -f "$RUN/$name.pid"
}
# Processes still running with their root in the chroot (e.g. a job's slurmstepd, which
# detaches from slurmd): all of them were started by this run.
chroot_pids() {
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    [[ $r == "$ROOT" ]] && echo "${p#/proc/}"
  done
  return 0
}

ready_munge() { ch sh -c 'munge -n | unmunge'; }
ready_mariadb() { ch mariadb-admin --socket=$S/mariadb/mariadb.sock -uroot ping; }
ready_slurmdbd() { ch sacctmgr -n -P list cluster format=cluster; }
ready_slurmctld() { ch scontrol ping | grep -q UP; }
ready_nodes() { [[ $(ch sinfo -h -N -o '%N %t' | grep -cE ' (idle|mix|alloc)$') == 4 ]]; }
ready_restd() { ch sh -c "curl -sf -H 'X-SLURM-USER-NAME: root' -H \"X-SLURM-USER-TOKEN: \$(scontrol token lifespan=60 | sed -n 's/^SLURM_JWT=//p')\" http://127.0.0.1:$PORT_RESTD/slurm/v0.0.42/ping"; }

up() {
  start munged munge:munge munged --foreground --key-file=$S/munge/munge.key \
    --pid-file=$S/munge/munged.pid --seed-file=$S/munge/munged.seed
  wait_for munged 30 ready_munge

  log "mariadb-install-db"
  ch mariadb-install-db --defaults-file=$S/etc/mariadb.cnf --user=mysql \
    --auth-root-authentication-method=socket --skip-test-db >"$RUN/mariadb-install-db.log" 2>&1
  start mariadb mysql:mysql mariadbd --defaults-file=$S/etc/mariadb.cnf
  wait_for mariadb 90 ready_mariadb
  local pw
  pw=$(cat "$ROOT$S/etc/db-password")
  ch mariadb --socket=$S/mariadb/mariadb.sock -uroot --batch <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF

  local ldpath=()
  [[ -n $LIBMARIADB_FROM ]] && ldpath=("LD_LIBRARY_PATH=/opt/libmariadb-$LIBMARIADB_FROM")
  start slurmdbd slurm:slurm "${ldpath[@]}" slurmdbd -D
  wait_for slurmdbd 180 ready_slurmdbd
  ch sacctmgr -i add cluster $CLUSTER >/dev/null
  ch sacctmgr -i add account default cluster=$CLUSTER description=capture organization=converged >/dev/null
  ch sacctmgr -i add user root account=default cluster=$CLUSTER defaultaccount=default >/dev/null

  start slurmctld slurm:slurm slurmctld -D -i
  wait_for slurmctld 90 ready_slurmctld
  local n
  for n in c1 c2 g1 c3; do start "slurmd-$n" root slurmd -D -N "$n"; done
  wait_for slurmd-c3 90 ready_nodes

  # slurmrestd refuses to serve as root/SlurmUser; SLURM_JWT is empty so every request must bring a token.
  start slurmrestd nobody:nogroup env SLURM_JWT= slurmrestd -a rest_auth/jwt \
    -s openapi/slurmctld,openapi/slurmdbd -d "data_parser/${DATA_PARSERS//,/,data_parser/}" \
    127.0.0.1:$PORT_RESTD
  wait_for slurmrestd 60 ready_restd
  log "cluster $CLUSTER up: $(ch sinfo -h -o '%P %D %t' | tr '\n' ';')"
}

down() {
  set +e
  if alive slurmctld; then
    log "cancelling remaining jobs"
    ch scancel --cluster=$CLUSTER --full --user=root >/dev/null 2>&1
    local i
    for ((i = 0; i < 30; i++)); do
      [[ -z $(ch squeue -h -t PD,R,CG,CF,S -o %i 2>/dev/null) ]] && break
      sleep 1
    done
  fi
  local k
  for ((k = ${#STARTED[@]} - 1; k >= 0; k--)); do stop_one "${STARTED[k]}"; done
  local pids
  pids=$(chroot_pids)
  if [[ -n $pids ]]; then
    log "killing leftover chroot processes: $(echo $pids)"
    kill -TERM $pids 2>/dev/null
    sleep 2
    pids=$(chroot_pids)
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null
  fi
  umount_all
  set -e
}

main() {
  mkdir -p "$WORK"
  trap down EXIT
  trap 'exit 130' INT TERM
  bootstrap
  other_libmariadb
  mount_all
  prepare
  up
  log "capturing into $OUT"
  python3 "$HERE/capture.py" --root "$ROOT" --out "$OUT" --restd "http://127.0.0.1:$PORT_RESTD" \
    --cluster "$CLUSTER" --versions "$DATA_PARSERS"
  if grep -rl 'eyJ' "$OUT" --include='*.json' --include='*.txt' >/dev/null; then
    die "a JWT (eyJ...) ended up in $OUT"
  fi
  log "done; logs of this run in $RUN"
}

if [[ ${1:-} == --bootstrap-only ]]; then
  # Only build (or check) the root filesystem.
  mkdir -p "$WORK"
  trap umount_all EXIT
  bootstrap
  other_libmariadb
elif [[ ${1:-} == --up-only ]]; then
  # For poking around by hand: bring the cluster up and keep it until $RUN/stop exists.
  mkdir -p "$WORK"
  trap down EXIT
  trap 'exit 130' INT TERM
  bootstrap
  other_libmariadb
  mount_all
  prepare
  up
  log "cluster up (chroot $ROOT); touch $RUN/stop to stop it"
  while [[ ! -e $RUN/stop ]]; do sleep 2; done
else
  main
fi
