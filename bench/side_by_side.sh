#!/usr/bin/env bash
# One benchmark, several revisions of converged, interleaved round by round on the same local cluster:
# a before/after comparison that meets the same machine load and the same site (these 2-core machines
# are noisy; two runs an hour apart compare the hour, not the code).
#
# Each revision is checked out (git worktree, detached) under $CONVERGED_REVS (default
# /tmp/converged-revs/<sha>) and runs its own copy of the bench script with its own packages first on
# PYTHONPATH, in this checkout's venv. The site's deployed controller is scaled to 0 for the duration
# (older benches do not mark their steps as an embedded controller's, and two controllers driving one
# step measure neither) and back to what it was at the end, also on Ctrl-C. Every run's output goes to
# bench-results/side-by-side-<time>/<round>-<rev>.txt; the lines matching --grep are printed together at
# the end.
#
# -c: before each revision's run, apply its own CRDs (crds/), and this checkout's again at the end. An
# older revision's models refuse fields a newer CRD added (pydantic extra="forbid"); with its own CRD
# applied the API server prunes them, so the site looks to it as it did.
#
# -b: run this checkout's bench script for every revision (each still with its own packages): for a
# bench that changed since the older revision (how it sets up the site, what it reports).
#
# -k: keep the site's deployed controller running (benches whose steps are marked as an embedded
# controller's, which it leaves alone; for a site others are using meanwhile).
#
# The Python is $PYTHON, else this checkout's .venv.
#
# Usage: bench/side_by_side.sh [-r ROUNDS] [-g REGEX] [-c] [-b] [-k] REV[,REV...] BENCH [ARGS...]
#   bench/side_by_side.sh -r 2 8ef2122,e7bc9cb,HEAD controller_steps.py --backend slurm --steps 1000
set -euo pipefail
rounds=1
grep_re='.'
own_crds=
this_bench=
keep_site=
while getopts "r:g:cbk" opt; do
  case $opt in
    k) keep_site=1 ;;
    c) own_crds=1 ;;
    b) this_bench=1 ;;
    r) rounds=$OPTARG ;;
    g) grep_re=$OPTARG ;;
    *) sed -n '2,28p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || { sed -n '27,28p' "$0" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IFS=, read -r -a revs <<<"$1"
bench=$2
shift 2
python=${PYTHON:-$root/.venv/bin/python}
revs_dir=${CONVERGED_REVS:-/tmp/converged-revs}
out=$root/bench-results/side-by-side-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out" "$revs_dir"
eval "$("$root/deploy/local/cluster" env)"

declare -A tree
for rev in "${revs[@]}"; do
  sha=$(git -C "$root" rev-parse --short=10 "$rev^{commit}")
  tree[$rev]=$revs_dir/$sha
  if [ ! -e "${tree[$rev]}/.git" ]; then
    git -C "$root" worktree add -q --detach "${tree[$rev]}" "$sha"
  fi
  [ -n "$this_bench" ] || [ -f "${tree[$rev]}/bench/$bench" ] || { echo "$rev has no bench/$bench" >&2; exit 2; }
done

site=(-n converged-system deployment/converged-daemon)
replicas=$(kubectl get "${site[@]}" -o jsonpath='{.spec.replicas}' 2>/dev/null || true)
if [ -n "$keep_site" ]; then replicas=; echo "# site controller left running"; fi
apply_crds() { kubectl apply --server-side --force-conflicts --field-manager=side-by-side -f "$1/crds/" >/dev/null; }
restore() {
  if [ -n "$own_crds" ]; then apply_crds "$root" && echo "# this checkout's CRDs applied again"; fi
  if [ -n "$replicas" ] && [ "$replicas" != 0 ]; then
    kubectl scale "${site[@]}" --replicas="$replicas" >/dev/null && echo "# site controller back to $replicas"
  fi
}
trap restore EXIT
if [ -n "$replicas" ] && [ "$replicas" != 0 ]; then
  kubectl scale "${site[@]}" --replicas=0 >/dev/null
  kubectl wait -n converged-system --for=delete pod -l app.kubernetes.io/name=converged-daemon --timeout=120s >/dev/null || true
  echo "# site controller scaled 0 (was $replicas)"
fi

echo "# $(date -u +%FT%TZ) $bench $* ; revisions: ${revs[*]} ; $(nproc) cores" | tee "$out/summary.txt"
for round in $(seq 1 "$rounds"); do
  for rev in "${revs[@]}"; do
    t=${tree[$rev]}
    log=$out/$round-${rev//\//_}.txt
    if [ -n "$own_crds" ]; then apply_crds "$t"; fi
    echo "# round $round, $rev ($(git -C "$t" rev-parse --short HEAD)), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.txt"
    script=$t/bench/$bench
    if [ -n "$this_bench" ]; then script=$root/bench/$bench; fi
    PYTHONPATH=$t/bridge:$t/plugin:$t/resource_daemon:$t "$python" "$script" "$@" >"$log" 2>&1 || echo "  FAILED (rc $?), see $log" | tee -a "$out/summary.txt"
    { grep -E -- "$grep_re" "$log" || true; } | sed "s/^/  /" | tee -a "$out/summary.txt"
  done
done
echo "# results in $out"
