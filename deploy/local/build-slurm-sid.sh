#!/usr/bin/env bash
# The root filesystem of the local cluster's second Slurm cluster, hpc2: Debian sid with Slurm
# $SLURM_SID_VERSION (slurmctld, slurmd, slurmdbd, slurmrestd and the client) and Apptainer, built with
# debootstrap and apt-get into $CONVERGED_CACHE/slurm-sid-<version>/root and rebuilt only when missing.
# Debian 12 has Slurm 22.05 only; sid packages 26.05 (data parsers v0.0.42-v0.0.45). hpc2's daemons run
# in mount namespaces whose root is this tree (localcluster/hpc2/enter.py), never in a chroot.
# Prints nothing when the root is already there and holds the packages below; a cold build (~2 min) is
# logged with its duration.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${CONVERGED_CACHE:-/var/cache/converged}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
v=$SLURM_SID_VERSION
dir=$cache/slurm-sid-$v
root=$dir/root

log() { printf '[build] %s\n' "$*" >&2; }

# Slurm pinned to the version of versions.env: a sid that moved on fails here, loudly, instead of
# giving a root of another Slurm under this version's name. munge is not installed: hpc2 shares the
# host's munged (same key, /run/munge bound in); nor is MariaDB: hpc2's slurmdbd uses the host's server.
SLURM=(slurmctld slurmd slurmdbd slurmrestd slurm-client slurm-wlm-basic-plugins slurm-wlm-jwt-plugin
  slurm-wlm-mysql-plugin)
# Apptainer from sid (1.4.x): the host's own build (bookworm) needs libsubid.so.4, and sid has libsubid6.
# squashfuse + fusermount3 (fuse3) mount a SIF without setuid.
OTHER=(apptainer squashfuse fuse3 procps)
PACKAGES=()
for p in "${SLURM[@]}"; do PACKAGES+=("$p=$v"); done
PACKAGES+=("${OTHER[@]}")
recipe=$(printf '%s\n' "sid $mirror" "${PACKAGES[@]}")

# in_root CMD...: CMD in the root with /proc and /dev mounted, in a mount namespace of its own (the
# mounts vanish with it), with a clean environment.
in_root() {
  unshare --mount --propagation private -- sh -ec '
    r=$1; shift
    mount -t proc proc "$r/proc"
    mount --rbind /dev "$r/dev"
    exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
      DEBIAN_FRONTEND=noninteractive "$@"' in_root "$1" "${@:2}"
}

# sid's Release carries a Valid-Until a week ahead; a mirror that lags (or a clock that runs ahead)
# makes apt refuse it as expired.
APT=(apt-get -q -o Acquire::Check-Valid-Until=false)

build() {
  local start=$SECONDS tmp=$dir/root.tmp
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
  if [[ ! -x $root/usr/bin/apt-get ]]; then
    log "debootstrap sid into $root (cold; about 2 min with the packages)"
    rm -rf "$tmp" && mkdir -p "$dir"
    debootstrap --variant=minbase sid "$tmp" "$mirror" >"$dir/debootstrap.log" 2>&1 \
      || { tail -20 "$dir/debootstrap.log" >&2; exit 1; }
    # no init runs in this root; nothing a package installs may try to start a service
    printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d" && chmod 755 "$tmp/usr/sbin/policy-rc.d"
    mv "$tmp" "$root"
    log "debootstrap took $((SECONDS - start))s"
  fi
  log "installing ${PACKAGES[*]} into $root"
  in_root "$root" "${APT[@]}" update >"$dir/apt.log" 2>&1 || { tail -20 "$dir/apt.log" >&2; exit 1; }
  in_root "$root" "${APT[@]}" install -y --no-install-recommends "${PACKAGES[@]}" >>"$dir/apt.log" 2>&1 \
    || { tail -30 "$dir/apt.log" >&2; log "is Slurm $v still in sid? (versions.env SLURM_SID_VERSION)"; exit 1; }
  in_root "$root" apt-get clean
  printf '%s\n' "$recipe" >"$root/.converged-recipe"
  log "slurm-sid $v root ready in $((SECONDS - start))s ($(du -sh "$root" | cut -f1))"
}

if [[ ! -e $root/.converged-recipe ]] || [[ $(cat "$root/.converged-recipe") != "$recipe" ]]; then
  build
fi
