"""Debian packages the local cluster needs, installed once with apt-get."""

from __future__ import annotations

import subprocess

from .procs import ClusterError, run


def missing(packages: list[str]) -> list[str]:
    out = []
    for p in packages:
        cp = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in cp.stdout:
            out.append(p)
    return out


def ensure(packages: list[str]) -> None:
    """apt-get install whatever of `packages` is missing (no recommends, no service start)."""
    need = missing(packages)
    if not need:
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env, timeout=600)
    try:
        # policy-rc.d 101 keeps Debian's maintainer scripts from starting services: we start our own.
        with open("/usr/sbin/policy-rc.d", "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        run(["chmod", "+x", "/usr/sbin/policy-rc.d"])
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *need], env=env, timeout=1800)
    except ClusterError as e:
        raise ClusterError(f"installing {' '.join(need)} failed: {e}") from e
    finally:
        subprocess.run(["rm", "-f", "/usr/sbin/policy-rc.d"])
