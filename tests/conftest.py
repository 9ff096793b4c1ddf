"""Session fixtures: the local converged cluster (deploy/local), used if running, else started.

Integration tests ask for `cluster_env` (the variables `cluster env` prints) or `kube_api`.
A cluster this session started is stopped at the end unless CONVERGED_KEEP_CLUSTER=1.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "deploy" / "local" / "cluster"


def cluster(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the local cluster CLI; its stderr goes to the test log on failure."""
    cp = subprocess.run([str(CLUSTER), *args], capture_output=True, text=True, timeout=3600)
    if check and cp.returncode != 0:
        raise RuntimeError(f"cluster {' '.join(args)} failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
    return cp


class ClusterEnv(dict[str, str]):
    """The variables of `cluster env`; its repr hides secrets, so a test log never shows a token."""

    def __repr__(self) -> str:
        return repr({k: ("<redacted>" if "JWT" in k or "TOKEN" in k else v) for k, v in self.items()})


@pytest.fixture(scope="session")
def cluster_env() -> Iterator[dict[str, str]]:
    """The running local cluster's variables. A partly running cluster is repaired with `up` and left
    running; a cluster that was entirely stopped is started and, at the end, stopped again."""
    status = cluster("status", "--json", check=False)
    rows = json.loads(status.stdout) if status.stdout.strip() else []
    started = not any(r["healthy"] for r in rows)
    if status.returncode != 0:
        cluster("up")
    values = ClusterEnv(json.loads(cluster("env", "--json").stdout))
    yield values
    if started and os.environ.get("CONVERGED_KEEP_CLUSTER") != "1":
        cluster("down", check=False)


@pytest.fixture(scope="session")
def kube_api(cluster_env: dict[str, str]) -> object:
    """An ApiClient of the official kubernetes client for the local cluster, as its admin."""
    from kubernetes import config

    return config.new_client_from_config(config_file=cluster_env["KUBECONFIG"], persist_config=False)
