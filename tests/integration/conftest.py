"""Fixtures for tests of converged itself on the local cluster: its CRDs, Slurm identities, a controller."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_NS = "converged-system"
# namespace -> Slurm user; team-c deliberately has no mapping
TEAMS = {"team-a": "alice", "team-b": "bob"}
# The steps tests create carry this label and the tests' own controllers select it; the site's deployed
# controller (the local cluster runs one, as a site does) leaves labelled steps alone.
TEST_LABELS = {"converged.dev/controller": "tests"}
TEST_SELECTOR = "converged.dev/controller=tests"
UNMAPPED_NS = "team-c"
# the tests' namespace for steps on the real node: Pod Security `restricted` enforced, pods run as alice
RESTRICTED_NS = "converged-restricted"


def kubectl(env: dict[str, str], *args: str, input: str | None = None, check: bool = True) -> str:
    cp = subprocess.run(
        [f"{env['CONVERGED_LOCAL_BIN']}/kubectl", f"--kubeconfig={env['KUBECONFIG']}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and cp.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {cp.stderr}")
    return cp.stdout


def apply(env: dict[str, str], *objects: dict[str, Any]) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    kubectl(
        env,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=converged-tests",
        "-f",
        "-",
        input=json.dumps(doc),
    )


def mint_token(user: str) -> str:
    out = subprocess.run(
        ["scontrol", "token", f"username={user}", "lifespan=86400"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().split("=", 1)[1]


@pytest.fixture(scope="session")
def converged_crds(cluster_env: dict[str, str]) -> dict[str, str]:
    kubectl(
        cluster_env,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=converged-tests",
        "-f",
        str(ROOT / "crds"),
    )
    kubectl(cluster_env, "wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
    return cluster_env


@pytest.fixture(scope="session")
def slurm_tokens() -> dict[str, str]:
    """JWTs by Slurm user; tests check that none of them ever shows up where it must not."""
    return {user: mint_token(user) for user in ("root", *TEAMS.values())}


def slurm_cluster(
    name: str, env: dict[str, str], runtime: str = "none", transport: str = "restd"
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "transport": transport,
        "containerRuntime": runtime,
        "defaults": {"partition": "cpu", "account": "default"},
        "userMapping": [
            {
                "namespace": ns,
                "user": user,
                "tokenSecretRef": {"namespace": SYSTEM_NS, "name": f"slurm-token-{user}", "key": "token"},
            }
            for ns, user in TEAMS.items()
        ],
    }
    if transport == "restd":
        spec["restd"] = {
            "url": env["SLURMRESTD_URL"],
            "tokenSecretRef": {"namespace": SYSTEM_NS, "name": "slurm-token-root", "key": "token"},
            "user": "root",
        }
    return {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "SlurmCluster",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture(scope="session")
def slurm_identities(converged_crds: dict[str, str], slurm_tokens: dict[str, str]) -> dict[str, str]:
    """Namespaces team-a/b/c, per-user JWT Secrets, and SlurmClusters `converged` (restd, no container),
    `converged-cli` (CLI transport), `converged-apptainer` (restd, Apptainer, the Slurm client bound for
    MPI steps) and `converged-charliecloud` (restd, charliecloud)."""
    env = converged_crds
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
        for n in (SYSTEM_NS, *TEAMS, UNMAPPED_NS)
    ]
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": f"slurm-token-{user}", "namespace": SYSTEM_NS},
            "stringData": {"token": token},
        }
        for user, token in slurm_tokens.items()
    ]
    apply(env, *namespaces)
    apply(env, *secrets)
    apply(
        env,
        slurm_cluster("converged", env),
        slurm_cluster("converged-cli", env, transport="cli"),
        {
            **(apptainer := slurm_cluster("converged-apptainer", env, runtime="apptainer")),
            "spec": {**apptainer["spec"], "bindPaths": env["CONVERGED_SLURM_BIND_PATHS"].split(",")},
        },
        {
            **(charlie := slurm_cluster("converged-charliecloud", env, runtime="charliecloud")),
            "spec": {**charlie["spec"], "bindPaths": [env["CONVERGED_SHARED_DIR"]]},
        },
    )
    return env


@pytest.fixture(scope="session")
def workdir(cluster_env: dict[str, str]) -> Path:
    """A directory on the shared filesystem every step user may write to."""
    path = Path(cluster_env["CONVERGED_SHARED_DIR"]) / "controller-tests"
    path.mkdir(exist_ok=True)
    # the steps' log directory too, as the controller now makes it in a 1777 directory (a site's state
    # from before that may hold one that belongs to whichever user's step made it)
    for d in (path, path / ".converged", path / ".converged/logs"):
        if d.is_dir():
            d.chmod(0o1777)
    return path


class ControllerProcess:
    """`converged-controller` as a real process, its JSON log captured to a file."""

    def __init__(
        self, env: dict[str, str], log: Path, kubeconfig: str | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.log = log
        self._extra = extra_args
        self._env = env
        self._kubeconfig = kubeconfig or env["KUBECONFIG"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "converged_bridge.controller",
                f"--kubeconfig={self._kubeconfig}",
                "--poll-interval=1",
                "--cluster-refresh=5",
                "--log-level=debug",
                f"--label-selector={TEST_SELECTOR}",
                *self._extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def controller(
    slurm_identities: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProcess]:
    proc = ControllerProcess(slurm_identities, tmp_path_factory.mktemp("controller") / "controller.log")
    proc.start()
    yield proc
    proc.stop()


def eventually(what: str, probe: Callable[[], Any], timeout: float = 90, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def build_restricted_namespace(env: dict[str, str], namespace: str, user: str) -> list[dict[str, Any]]:
    """A namespace whose pods run as `user` under Pod Security `restricted` (enforced), with the shared
    directory as its claim converged-shared (a hostPath PersistentVolume of its own) and a LocalQueue
    `real` on the real node's ClusterQueue: what the local site makes for alice and bob."""
    from localcluster.site import RESTRICTED, build_shared_claim

    pw = pwd.getpwnam(user)
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": dict(RESTRICTED),
                "annotations": {
                    "converged.dev/run-as-user": str(pw.pw_uid),
                    "converged.dev/run-as-group": str(pw.pw_gid),
                    "converged.dev/run-as-name": user,
                },
            },
        },
        *build_shared_claim(namespace, Path(env["CONVERGED_SHARED_DIR"])),
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": "real", "namespace": namespace},
            "spec": {"clusterQueue": "real"},
        },
    ]


def apply_restricted_namespace(env: dict[str, str], namespace: str, user: str) -> None:
    """build_restricted_namespace applied (kept between runs: its PersistentVolume stays bound), once its
    claim is bound."""
    apply(env, *build_restricted_namespace(env, namespace, user))
    eventually(
        f"the claim converged-shared of {namespace} to be bound",
        lambda: (
            kubectl(env, "get", "pvc", "converged-shared", "-n", namespace, "-o", "jsonpath={.status.phase}")
            == "Bound"
        ),
        60,
    )


@pytest.fixture(scope="session")
def restricted_namespace(cluster_env: dict[str, str]) -> str:
    """RESTRICTED_NS, where the tests' Kubernetes steps run on the real node (as alice)."""
    apply_restricted_namespace(cluster_env, RESTRICTED_NS, "alice")
    return RESTRICTED_NS


@pytest.fixture(scope="module")
def real_controller(
    cluster_env: dict[str, str],
    converged_crds: dict[str, str],
    restricted_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ControllerProcess]:
    shared = cluster_env["CONVERGED_SHARED_DIR"]
    proc = ControllerProcess(
        cluster_env,
        tmp_path_factory.mktemp("real") / "controller.log",
        extra_args=(f"--shared-paths={shared}", "--local-queue=real"),
    )
    proc.start()
    yield proc
    proc.stop()
