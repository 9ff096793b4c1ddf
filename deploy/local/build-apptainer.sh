#!/usr/bin/env bash
# Build Apptainer (unprivileged, no setuid starter) from its Go module source and install it as a prefix
# under $CONVERGED_CACHE/apptainer-<version>/, rebuilt only when missing. Debian 12 ships no Apptainer.
# Every run writes <prefix>/etc/apptainer/apptainer.conf from apptainer.conf beside this script.
# Prints nothing when the prefix is already there; a cold build (~10 min on 2 cores) is logged with its duration.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${CONVERGED_CACHE:-/var/cache/converged}
v=$APPTAINER_VERSION
prefix=$cache/apptainer-$v
module=github.com/apptainer/apptainer

log() { printf '[build] %s\n' "$*" >&2; }

# Build: the C starter needs libseccomp and libsubid (both detected by mconfig); Go comes from the host.
# Run: mksquashfs/unsquashfs (SIF build, --unsquash), squashfuse + fusermount3 (mounting a SIF without
# setuid), newuidmap/newgidmap (--fakeroot).
PACKAGES=(build-essential pkg-config libseccomp-dev libsubid-dev squashfs-tools squashfuse fuse3 uidmap)

ensure_packages() {
  local need=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
  done
  ((${#need[@]})) || return 0
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
}

build() {
  local work="$prefix.build" start=$SECONDS
  log "building apptainer $v into $prefix (cold; about 10 min on 2 cores)"
  rm -rf "$work" "$prefix.tmp" && mkdir -p "$work"
  # The module zip holds the whole tree (mconfig, makeit, the C starter). The checksum database is not
  # asked about it (GONOSUMDB); its hash is checked against APPTAINER_SUM instead.
  local info dir sum
  info=$(cd "$work" && GONOSUMDB=$module go mod download -json "$module@$v")
  dir=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["Dir"])' "$info")
  sum=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["Sum"])' "$info")
  [[ $sum == "$APPTAINER_SUM" ]] || { log "$module@$v has hash $sum, versions.env pins $APPTAINER_SUM"; exit 1; }
  cp -r "$dir" "$work/src" && chmod -R u+w "$work/src"
  cd "$work/src"
  # The zip keeps no exec bits (mconfig runs its scripts directly) and no git metadata (scripts/get-version
  # reads VERSION instead).
  grep -rlI --null '^#!' . | while IFS= read -r -d '' f; do
    [[ $(head -c2 "$f") == '#!' ]] && chmod +x "$f"
  done
  echo "${v#v}" >VERSION
  # build-binaries.sh exports CGO_ENABLED=0 and -trimpath; Apptainer needs cgo. Its Makefile runs
  # `go clean -cache`, so it gets a Go build cache of its own, dropped with the build tree. Its Makefile
  # also pins GOPROXY; the command line hands it the host's.
  unset CGO_ENABLED
  export GOFLAGS=-buildvcs=false GOCACHE="$work/gocache"
  ./mconfig --without-suid --prefix="$prefix" >"$work/mconfig.log" 2>&1 \
    || { tail -20 "$work/mconfig.log" >&2; exit 1; }
  make -C builddir -j"$(nproc)" GOPROXY="$(go env GOPROXY)" >"$work/make.log" 2>&1 \
    || { tail -30 "$work/make.log" >&2; exit 1; }
  # Installed under DESTDIR, then moved into place: a half-installed prefix never looks built.
  make -C builddir install DESTDIR="$prefix.tmp" >"$work/install.log" 2>&1 \
    || { tail -30 "$work/install.log" >&2; exit 1; }
  cd /
  mv "$prefix.tmp$prefix" "$prefix"
  rm -rf "$prefix.tmp" "$work"
  log "built apptainer $v in $((SECONDS - start))s"
}

# The configuration the local cluster runs with: apptainer.conf beside this script, written on every run
# (the same bytes whatever was there), root-owned and read-only as Apptainer expects of its own config.
configure() {
  local conf="$prefix/etc/apptainer/apptainer.conf"
  cmp -s "$here/apptainer.conf" "$conf" && return 0
  install -o root -g root -m 0644 "$here/apptainer.conf" "$conf.tmp"
  mv "$conf.tmp" "$conf"
}

ensure_packages
[[ -x "$prefix/bin/apptainer" ]] || (build)
configure
