#!/usr/bin/env bash
# Times the slow build steps of `make up` from empty caches, beside a running local cluster and without
# touching it: the pinned Go binaries (Kubernetes, etcd, Kueue, kwok, JobSet, MPI Operator, CoreDNS),
# hpc2's Debian sid root with Slurm 26.05, Apptainer from source, and the step and pause images, each
# with a cache, a Go module cache and a Go build cache of its own under DIR (default /tmp/converged-cold,
# emptied first). What it cannot empty: the Debian packages already installed on this machine (apt-get
# only installs what is missing). Appends "seconds step" lines to DIR/times and prints them.
#
# Usage: bench/cold_build.sh [DIR]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../deploy/local" && pwd)
dir=${1:-/tmp/converged-cold}
rm -rf "$dir"
mkdir -p "$dir"
export CONVERGED_CACHE=$dir/cache CONVERGED_LOCAL_DIR=$dir/local GOMODCACHE=$dir/gomod GOCACHE=$dir/gocache
timed() {
  local name=$1 start
  shift
  start=$(date +%s)
  "$@"
  echo "$(($(date +%s) - start)) $name" | tee -a "$dir/times"
}
echo "# $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores" | tee "$dir/times"
timed go-binaries bash "$here/build-binaries.sh"
timed hpc2-sid-root bash "$here/build-slurm-sid.sh"
timed apptainer bash "$here/build-apptainer.sh"
timed images python3 -c "
import sys; sys.path.insert(0, '$here')
from localcluster import images
from localcluster.layout import Layout
images.build_all(Layout.default())"
echo "# done $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$dir/times"
