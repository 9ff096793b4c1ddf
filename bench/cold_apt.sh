#!/usr/bin/env bash
# Times the Debian packages part of `make up` (and `make test`'s Chromium) as a fresh Debian 12 machine
# meets it, which bench/cold_build.sh cannot: on this machine they are installed already. A minimal
# bookworm root (debootstrap --variant=minbase, with Python 3 added: the README's "Python 3.11 present")
# stands for the fresh machine; in it, timed, the same `apt-get update` and `apt-get install
# --no-install-recommends` of every package the local cluster's code asks for (read from its own lists),
# with services kept from starting (policy-rc.d), as localcluster.packages does. Appends "seconds step"
# lines to DIR/times and prints them; the root is left in DIR/root (remove it by hand, ~1 GB).
#
# Usage: bench/cold_apt.sh [DIR]   (default /tmp/converged-cold-apt; emptied first)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../deploy/local" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${1:-/tmp/converged-cold-apt}
root=$dir/root
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rm -rf "$dir"
mkdir -p "$dir"
exec 3>&1 # the times, to the terminal, whatever a step's output is sent to

# every package list of the local cluster's code, as the code has them
mapfile -t pkgs < <(
  cd "$here" && python3 - <<'EOF'
from localcluster import containerd, images, slurm, userenv
for p in sorted({*slurm.PACKAGES, *containerd.PACKAGES, *images.PACKAGES, *userenv.PACKAGES}):
    print(p)
EOF
)
eval "$(sed -n 's/^PACKAGES=(\(.*\))$/apptainer_pkgs=(\1)/p' "$here/build-apptainer.sh")"
eval "$(sed -n 's/^packages=(\(.*\))$/browser_pkgs=(\1)/p' "$repo/tests/browser/ensure-chromium")"

timed() {
  local name=$1 start
  shift
  start=$(date +%s)
  "$@"
  echo "$(($(date +%s) - start)) $name" | tee -a "$dir/times" >&3
}
in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }

echo "# $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores, mirror $mirror" | tee "$dir/times"
timed "debootstrap-minbase (the fresh machine; not part of make up)" \
  debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$root" "$mirror" >"$dir/debootstrap.log"
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
timed apt-get-update in_root apt-get update -q >"$dir/apt.log"
timed "make-up-packages (${#pkgs[@]}: ${pkgs[*]})" in_root apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"$dir/apt.log"
timed "apptainer-build-packages (${apptainer_pkgs[*]})" in_root apt-get install -y -q --no-install-recommends "${apptainer_pkgs[@]}" >>"$dir/apt.log"
timed "make-test-browser (${browser_pkgs[*]})" in_root apt-get install -y -q --no-install-recommends "${browser_pkgs[@]}" >>"$dir/apt.log"
echo "# done $(date -u +%FT%TZ); $(du -sh "$root/var/cache/apt/archives" | cut -f1) of packages downloaded" | tee -a "$dir/times"
