"""`deploy/local/cluster up|down|status|env|build|hpc2-exec` — the local converged cluster's one CLI."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from . import (
    apptainer,
    containerd,
    coredns,
    hpc2,
    images,
    kube,
    kubelet,
    kueue,
    kwok,
    mounts,
    operators,
    packages,
    procs,
    registry,
    site,
    slurm,
    userenv,
)
from .layout import HERE, Layout
from .procs import ClusterError

# Kubernetes-side components in start order; each module has up/down/health.
# containerd runs the real node's pods from the step image; kubelet is that node.
KUBE_SIDE = (kube, containerd, images, kubelet, kueue, operators, coredns, kwok)


def build(layout: Layout) -> None:
    """Build (or find cached) the pinned Go binaries."""
    env = {"CONVERGED_CACHE": str(layout.cache)}
    cp = subprocess.run(["bash", str(HERE / "build-binaries.sh")], env={**os.environ, **env})
    if cp.returncode != 0:
        raise ClusterError("building the Kubernetes/Kueue/kwok binaries failed (output above)")


def up(layout: Layout) -> None:
    start = time.monotonic()
    layout.ensure()
    build(layout)
    # one apt-get run for every component, before any of them runs beside another
    packages.ensure([*slurm.PACKAGES, *containerd.PACKAGES, *images.PACKAGES, *registry.PACKAGES])
    registry.trust(layout)  # the site's CA trusted and the registry's name known before any node starts
    with ThreadPoolExecutor(max_workers=2) as pool:
        slurm_done = pool.submit(_slurm_up, layout)  # Slurm comes up beside the Kubernetes side
        images_done = pool.submit(images.build_all, layout)  # cached by recipe: slow only when it changed
        kube.up(layout)
        images_done.result()
        apptainer.up(layout)  # the step image as a SIF, the runtime on the Slurm nodes' PATH
        containerd.up(layout, sandbox_image=images.pause(layout).ref)
        images.up(layout)
        kubelet.up(layout)
        kueue.up(layout)
        operators.up(layout)
        coredns.up(layout)
        kwok.up(layout)
        slurm_done.result()
    # the site, as an admin sets it up: Slurm and Kubernetes both serve by now
    registry.up(layout, site.USERS)
    step = images.step(layout)  # published as <registry>/site/step: a base for the users' own images
    digest = (step.dir / "manifest-digest").read_text().strip()
    registry.publish(layout, "step", step.archive, (step.tag, images.STABLE_TAG), digest)
    userenv.up(layout, site.USERS)
    site.up(layout)
    print(f"local converged cluster up in {time.monotonic() - start:.1f}s", file=sys.stderr)


def _slurm_up(layout: Layout) -> None:
    """hpc1, then hpc2, which shares hpc1's munged and MariaDB."""
    slurm.up(layout)
    started = time.monotonic()
    hpc2.up(layout)
    print(f"Slurm cluster hpc2 up in {time.monotonic() - started:.1f}s", file=sys.stderr)


def down(layout: Layout) -> None:
    for component in reversed(KUBE_SIDE):
        component.down(layout)  # kubelet drains through the API server, so kube goes down last
    hpc2.down(layout)  # before hpc1's Slurm: it uses hpc1's munged and MariaDB
    slurm.down(layout)
    registry.down(layout)
    left = [name for name in procs.started_names(layout) if procs.running(layout, name) is not None]
    for name in left:  # anything else we started, by pid file
        procs.stop(layout, name)


def reset(layout: Layout) -> None:
    """down, then delete all local state (etcd data, Slurm state and accounting, kubelet dirs, logs).

    Binaries and images stay cached. Refuses while anything is still mounted under the state dir.
    """
    down(layout)
    if not layout.root.exists():
        return
    busy = mounts.under(layout.root.resolve(), mounts.read_mounts())
    if busy:
        raise ClusterError(f"still mounted under {layout.root}: {', '.join(map(str, busy[:5]))}")
    shutil.rmtree(layout.root)


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    rows: list[tuple[str, bool, str]] = []
    for component in (*KUBE_SIDE, slurm, apptainer, hpc2, registry, userenv, site):
        rows += component.health(layout)
    return rows


def env(layout: Layout) -> dict[str, str]:
    out = kube.env(layout)
    out.update(slurm.env(layout))
    out.update(hpc2.env(layout))
    out["CONVERGED_SHARED_DIR"] = str(layout.shared)
    out.update(images.env(layout))
    out.update(apptainer.env(layout))
    out.update(site.env(layout))
    out.update(containerd.env(layout))
    out.update(registry.env(layout))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="install what is missing, build or reuse binaries, start every component")
    sub.add_parser("down", help="stop every process this cluster started (by pid file)")
    sub.add_parser("reset", help="down, then delete all state (a fresh cluster on the next up)")
    st = sub.add_parser("status", help="health of each component; exit 1 if any is unhealthy")
    st.add_argument("--json", action="store_true")
    en = sub.add_parser("env", help="print the variables to export (KUBECONFIG, Slurm token and URLs)")
    en.add_argument("--json", action="store_true")
    sub.add_parser("build", help="only build or find the cached binaries (and hpc2's root filesystem)")
    ex = sub.add_parser(
        "hpc2-exec",
        help="run a command in hpc2's root (its Slurm commands: sbatch, squeue, sacct, scontrol ...)",
    )
    ex.add_argument("--user", help="run as this user (default: root)")
    ex.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND ...")
    args = parser.parse_args(argv)
    layout = Layout.default()
    if args.command in ("up", "down", "reset", "build"):
        layout.root.parent.mkdir(parents=True, exist_ok=True)
        lock = open(layout.root.parent / f".{layout.root.name}.lock", "w")  # noqa: SIM115 - held until exit
        # one up/down at a time: two concurrent `up`s would each start the daemons they find stopped
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        if args.command == "up":
            up(layout)
            return _print_status(layout, as_json=False)
        if args.command == "down":
            down(layout)
            return 0
        if args.command == "reset":
            reset(layout)
            return 0
        if args.command == "status":
            return _print_status(layout, as_json=args.json)
        if args.command == "env":
            values = env(layout)
            if args.json:
                print(json.dumps(values, indent=2))
            else:
                for key, value in values.items():
                    print(f"export {key}={shlex.quote(value)}")
                print(f'export PATH={shlex.quote(values["CONVERGED_LOCAL_BIN"])}:"$PATH"')
            return 0
        if args.command == "build":
            build(layout)
            return 0
        if args.command == "hpc2-exec":
            command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not command:
                parser.error("hpc2-exec needs a command")
            # stdin, stdout and stderr are the caller's; the exit status is the command's
            return subprocess.run(hpc2.in_root(layout, command, user=args.user), check=False).returncode
    except ClusterError as e:
        print(f"cluster {args.command}: {e}", file=sys.stderr)
        return 1
    return 2


def _print_status(layout: Layout, as_json: bool) -> int:
    rows = health(layout)
    if as_json:
        print(json.dumps([{"component": n, "healthy": ok, "detail": d} for n, ok, d in rows], indent=2))
    else:
        width = max(len(n) for n, _, _ in rows)
        for name, ok, detail in rows:
            print(f"{name:<{width}}  {'healthy' if ok else 'UNHEALTHY':<9}  {detail}")
    return 0 if all(ok for _, ok, _ in rows) else 1
