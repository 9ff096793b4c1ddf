#!/usr/bin/env bash
# Build the local cluster's Go binaries from the Go module proxy, cached by version.
# Usage: build-binaries.sh [component...]   (default: all)
# Components: etcd kueue kwok kubernetes operator_crds jobset mpi_operator (or mpi-operator) coredns
#             apptainer slurm_sid (or slurm-sid)
# Prints nothing for components already cached; each cold build is logged with its duration.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${CONVERGED_CACHE:-/var/cache/converged}
export CGO_ENABLED=0 GOFLAGS=-trimpath

log() { printf '[build] %s\n' "$*" >&2; }

# binname PKG: the file name go build gives PKG's binary (a trailing /vN major suffix is dropped).
binname() { local p=${1%/v[0-9]*}; echo "${p##*/}"; }

# build_into DIR MODULE_DIR LDFLAGS PKG... : go build each PKG into DIR unless its binary exists.
build_into() {
  local out=$1 moddir=$2 ldflags=$3; shift 3
  local missing=()
  for pkg in "$@"; do [[ -x "$out/$(binname "$pkg")" ]] || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  mkdir -p "$out.tmp"
  local start=$SECONDS
  log "building ${missing[*]} into $out (cold; this takes a while on 2 cores)"
  (cd "$moddir" && go build -ldflags "$ldflags" -o "$out.tmp/" "${missing[@]}")
  mkdir -p "$out"
  for pkg in "${missing[@]}"; do mv "$out.tmp/$(binname "$pkg")" "$out/"; done
  rmdir "$out.tmp"
  log "built ${missing[*]} in $((SECONDS - start))s"
}

kubernetes() {
  local v=$KUBERNETES_VERSION
  grep -q "k8s.io/kubernetes $v\$" "$here/go/kubernetes/go.mod" \
    || { log "go/kubernetes/go.mod does not require k8s.io/kubernetes $v"; exit 1; }
  local major minor
  IFS=. read -r major minor _ <<<"${v#v}"
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  local cmds=()
  for c in "${KUBE_COMPONENTS[@]}"; do cmds+=("k8s.io/kubernetes/cmd/$c"); done
  build_into "$cache/kubernetes-$v" "$here/go/kubernetes" "$ld" "${cmds[@]}"
}

etcd() {
  local v=$ETCD_VERSION
  grep -q "go.etcd.io/etcd/server/v3 $v\$" "$here/go/etcd/go.mod" \
    || { log "go/etcd/go.mod does not require etcd server $v"; exit 1; }
  build_into "$cache/etcd-$v" "$here/go/etcd" "-s -w" go.etcd.io/etcd/server/v3
  # the server package builds as "server"; give it its real name
  [[ -x "$cache/etcd-$v/etcd" ]] || ln -sf server "$cache/etcd-$v/etcd"
}

# module_build NAME VERSION MODULE PKG: build PKG from the wrapper module go/NAME pinned to MODULE@VERSION.
module_build() {
  local name=$1 v=$2 module=$3 pkg=$4
  grep -q "$module $v\$" "$here/go/$name/go.mod" \
    || { log "go/$name/go.mod does not require $module $v"; exit 1; }
  build_into "$cache/$name-$v" "$here/go/$name" "-s -w" "$pkg"
}
kueue() { module_build kueue "$KUEUE_VERSION" sigs.k8s.io/kueue sigs.k8s.io/kueue/cmd/kueue; kueue_crds; }
kwok() { module_build kwok "$KWOK_VERSION" sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok; kwok_stages; }
# The operators converged builds objects for, run out of cluster by the local cluster. JobSet's
# manager is its module's root package (binary "jobset"); the MPI Operator's v2 controller is
# cmd/mpi-operator; CoreDNS's main is its module's root package, with every in-tree plugin.
jobset() { module_build jobset "$JOBSET_VERSION" sigs.k8s.io/jobset sigs.k8s.io/jobset; jobset_config; }
mpi_operator() {
  module_build mpi-operator "$MPI_OPERATOR_VERSION" github.com/kubeflow/mpi-operator \
    github.com/kubeflow/mpi-operator/cmd/mpi-operator
}
coredns() { module_build coredns "$COREDNS_VERSION" github.com/coredns/coredns github.com/coredns/coredns; }

# module_dir NAME MODULE@VERSION: where the Go module cache holds that module's source.
module_dir() { (cd "$here/go/$1" && go mod download -json "$2" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])'); }

# Kueue's CRDs and kwok's stages come from their modules, copied next to the binaries.
kueue_crds() {
  local out="$cache/kueue-$KUEUE_VERSION/crds"
  [[ -d "$out" ]] && return 0
  local dir; dir=$(module_dir kueue "sigs.k8s.io/kueue@$KUEUE_VERSION")
  mkdir -p "$out.tmp" && cp "$dir"/config/components/crd/bases/*.yaml "$out.tmp/" && mv "$out.tmp" "$out"
}
kwok_stages() {
  local out="$cache/kwok-$KWOK_VERSION/stages"
  [[ -d "$out" ]] && return 0
  local dir; dir=$(module_dir kwok "sigs.k8s.io/kwok@$KWOK_VERSION")
  mkdir -p "$out.tmp"
  for s in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
           pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    cp "$dir/kustomize/stage/$s.yaml" "$out.tmp/"
  done
  chmod -R u+w "$out.tmp" && mv "$out.tmp" "$out"
}

# JobSet's upstream manager configuration, webhook manifests (with the kustomize patches that add the
# pods' objectSelector) and manager ClusterRole: what running it out of cluster is derived from.
jobset_config() {
  local out="$cache/jobset-$JOBSET_VERSION/config"
  [[ -d "$out" ]] && return 0
  local dir; dir=$(module_dir jobset "sigs.k8s.io/jobset@$JOBSET_VERSION")
  mkdir -p "$out.tmp"
  cp "$dir/config/components/manager/controller_manager_config.yaml" "$out.tmp/"
  cp "$dir/config/components/webhook/manifests.yaml" "$out.tmp/webhook-manifests.yaml"
  cp "$dir/config/components/webhook/patches/mutating-patch.yaml" "$out.tmp/webhook-mutating-patch.yaml"
  cp "$dir/config/components/webhook/patches/validating-patch.yaml" "$out.tmp/webhook-validating-patch.yaml"
  cp "$dir/config/components/rbac/role.yaml" "$out.tmp/manager-role.yaml"
  chmod -R u+w "$out.tmp" && mv "$out.tmp" "$out"
}

# CRDs of the operators whose objects converged builds, from the wrapper modules of the controllers
# the local cluster runs (JOBSET_VERSION, MPI_OPERATOR_VERSION); only downloads, builds nothing.
operator_crds() {
  local out="$cache/operator-crds-jobset-$JOBSET_VERSION-mpi-$MPI_OPERATOR_VERSION"
  [[ -d "$out" ]] && return 0
  local jobset mpi
  jobset=$(module_dir jobset "sigs.k8s.io/jobset@$JOBSET_VERSION")
  mpi=$(module_dir mpi-operator "github.com/kubeflow/mpi-operator@$MPI_OPERATOR_VERSION")
  mkdir -p "$out.tmp"
  cp "$jobset/config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml" "$out.tmp/"
  cp "$mpi/manifests/base/kubeflow.org_mpijobs.yaml" "$out.tmp/"
  chmod -R u+w "$out.tmp" && mv "$out.tmp" "$out"
}

# Apptainer (Go + its C starter, installed as a prefix): its own script.
apptainer() { "$here/build-apptainer.sh"; }
# hpc2's root filesystem (Debian sid, Slurm 26.05): its own script.
slurm_sid() { "$here/build-slurm-sid.sh"; }

KUBE_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)
targets=("$@")
((${#targets[@]})) || targets=(etcd kueue kwok kubernetes operator_crds jobset mpi_operator coredns apptainer slurm_sid)
for t in "${targets[@]}"; do "${t//-/_}"; done
