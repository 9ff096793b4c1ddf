"""Acceptance of the site registry as a user meets it: alice builds a tiny image with the tools she has
(rootless buildah, from scratch, with Debian's static busybox) and pushes it under her name; bob cannot
push under hers; Apptainer pulls it as alice into a SIF and runs it on hpc1 and in hpc2's root; the real
node's kubelet pulls it for a Pod in her namespace. TLS is verified everywhere with the site's CA."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.conftest import cluster

pytestmark = pytest.mark.integration
REAL_NODE = "real-node-0"
REPO = "alice/registry-test"  # the test's pushes, one tag each run (the registry keeps them)
CONTAINERFILE = 'FROM scratch\nCOPY bin /bin\nCMD ["/bin/sh"]\n'


def uid_of(user: str) -> int:
    return int(subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout)


def as_user(user: str, *argv: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`argv` as `user` (her HOME: her registry credentials and her buildah storage)."""
    return subprocess.run(
        ["runuser", "-u", user, "--", *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def workdir(cluster_env: dict[str, str]) -> Iterator[Path]:
    """A directory of alice's on the shared filesystem, removed afterwards."""
    d = (
        Path(cluster_env["CONVERGED_SHARED_DIR"])
        / "users"
        / "alice"
        / f"registry-test-{uuid.uuid4().hex[:8]}"
    )
    d.mkdir()
    shutil.chown(d, "alice", "alice")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def image(cluster_env: dict[str, str], workdir: Path) -> Iterator[str]:
    """alice's image, built and pushed as she would: `buildah bud` then `buildah push`."""
    registry = cluster_env["CONVERGED_REGISTRY"]
    ref = f"{registry}/{REPO}:{uuid.uuid4().hex[:8]}"
    ctx = workdir / "ctx"
    (ctx / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", ctx / "bin" / "busybox")
    for applet in ("sh", "cat", "id"):
        (ctx / "bin" / applet).symlink_to("busybox")
    (ctx / "Containerfile").write_text(CONTAINERFILE)
    subprocess.run(["chown", "-R", "alice:alice", str(ctx)], check=True)
    built = as_user("alice", "buildah", "bud", "--quiet", "-t", ref, ".", cwd=ctx)
    assert built.returncode == 0, built.stderr
    pushed = as_user("alice", "buildah", "push", "--quiet", ref, cwd=ctx)
    assert pushed.returncode == 0, pushed.stderr
    yield ref
    as_user("alice", "buildah", "rmi", ref, cwd=ctx)


def test_status_and_env_name_the_registry(cluster_env: dict[str, str]) -> None:
    rows = {r["component"]: r for r in json.loads(cluster("status", "--json", check=False).stdout)}
    assert rows["registry"]["healthy"], rows["registry"]
    assert cluster_env["CONVERGED_REGISTRY"] == "registry.converged.local:5443"
    assert rows["registry"]["detail"].startswith("registry.converged.local:5443: ")


def test_alice_pushes_under_her_name_and_anyone_on_the_site_reads_it(image: str, workdir: Path) -> None:
    # anonymous read (no credentials at all), TLS verified with the host's trust store
    cp = subprocess.run(
        ["skopeo", "inspect", "--no-creds", f"docker://{image}"], capture_output=True, text=True, timeout=120
    )
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["Name"] == image.rsplit(":", 1)[0]


def test_bob_cannot_push_under_alice(image: str, workdir: Path, cluster_env: dict[str, str]) -> None:
    registry = cluster_env["CONVERGED_REGISTRY"]
    tag = image.rsplit(":", 1)[1]
    theirs = as_user(
        "bob", "skopeo", "copy", f"docker://{image}", f"docker://{registry}/alice/taken:{tag}", cwd=Path("/")
    )
    assert theirs.returncode != 0
    assert "403" in theirs.stderr, theirs.stderr
    # the same copy under his own name works: his credentials are good, the rule is the name
    his = as_user(
        "bob", "skopeo", "copy", f"docker://{image}", f"docker://{registry}/bob/copied:{tag}", cwd=Path("/")
    )
    assert his.returncode == 0, his.stderr
    # without credentials nobody pushes at all
    anon = subprocess.run(
        ["skopeo", "copy", "--dest-no-creds", f"docker://{image}", f"docker://{registry}/alice/anon:{tag}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert anon.returncode != 0 and "unauthorized: authentication required" in anon.stderr, anon.stderr


def test_apptainer_on_hpc1_pulls_it_into_a_sif_as_alice(image: str, workdir: Path) -> None:
    sif = workdir / "hpc1.sif"
    pulled = as_user("alice", "apptainer", "--silent", "pull", str(sif), f"docker://{image}", cwd=workdir)
    assert pulled.returncode == 0, pulled.stderr
    ran = as_user(
        "alice", "apptainer", "--silent", "exec", str(sif), "sh", "-c", "echo in-sif; id -u", cwd=workdir
    )
    # as alice (the image has no /etc/passwd to name her by)
    assert (ran.returncode, ran.stdout) == (0, f"in-sif\n{uid_of('alice')}\n"), ran.stderr


def test_apptainer_in_hpc2s_root_pulls_it_as_alice(image: str, workdir: Path) -> None:
    sif = workdir / "hpc2.sif"
    pulled = cluster(
        "hpc2-exec", "--user", "alice", "--", "apptainer", "--silent", "pull", str(sif), f"docker://{image}",
        check=False,
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    ran = cluster("hpc2-exec", "--user", "alice", "--", "apptainer", "--silent", "exec", str(sif), "sh", "-c",
                  "echo in-hpc2", check=False)  # fmt: skip
    assert (ran.returncode, ran.stdout) == (0, "in-hpc2\n"), ran.stderr


def test_the_real_nodes_kubelet_pulls_it_for_a_pod_in_alices_namespace(
    image: str, kube_api: client.ApiClient
) -> None:
    """As the admin (alice's RBAC has no Pods): a plain Pod pinned to the real node, pulled with no
    imagePullSecret, run as alice's uid under Pod Security "restricted"."""
    core = client.CoreV1Api(kube_api)
    name = f"registry-test-{uuid.uuid4().hex[:8]}"
    uid = uid_of("alice")
    requests = {"cpu": "100m", "memory": "32Mi"}
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_name=REAL_NODE,
            restart_policy="Never",
            # Pod Security "restricted", which the users' namespaces enforce
            security_context=client.V1PodSecurityContext(
                run_as_user=uid,
                run_as_group=uid,
                run_as_non_root=True,
                seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
            ),
            containers=[
                client.V1Container(
                    name="main",
                    image=image,
                    image_pull_policy="Always",
                    command=["sh", "-c", "echo pulled-by-the-kubelet; id -u"],
                    resources=client.V1ResourceRequirements(requests=requests, limits=requests),
                    security_context=client.V1SecurityContext(
                        allow_privilege_escalation=False, capabilities=client.V1Capabilities(drop=["ALL"])
                    ),
                )
            ],
        ),
    )
    core.create_namespaced_pod("alice", pod)
    try:
        deadline = time.monotonic() + 180
        got = core.read_namespaced_pod(name, "alice")
        while str(got.status.phase) not in ("Succeeded", "Failed") and time.monotonic() < deadline:
            time.sleep(1)
            got = core.read_namespaced_pod(name, "alice")
        statuses = list(got.status.container_statuses or [])
        done = str(got.status.phase) in ("Succeeded", "Failed")
        log = str(core.read_namespaced_pod_log(name, "alice")) if done else ""
        assert got.status.phase == "Succeeded", f"{got.status.phase}: {statuses}\n{log}"
        assert log == f"pulled-by-the-kubelet\n{uid}\n"
        assert str(statuses[0].image_id).startswith(f"{image.rsplit(':', 1)[0]}@sha256:"), statuses
    finally:
        core.delete_namespaced_pod(name, "alice", grace_period_seconds=0)


def test_credentials_are_only_in_the_users_homes(cluster_env: dict[str, str]) -> None:
    """Each user's password in her two files (hers, 0600), and in no status or env line."""
    status = cluster("status", "--json", check=False).stdout
    env = cluster("env", "--json").stdout
    for user in ("alice", "bob"):
        home = Path(os.path.expanduser(f"~{user}"))
        uid = uid_of(user)
        for f in (home / ".config/containers/auth.json", home / ".apptainer/docker-config.json"):
            st = f.stat()
            assert (st.st_mode & 0o777, st.st_uid) == (0o600, uid), f
            auths = json.loads(f.read_text())["auths"]
            assert list(auths) == [cluster_env["CONVERGED_REGISTRY"]]
            login, _, password = (
                base64.b64decode(auths[cluster_env["CONVERGED_REGISTRY"]]["auth"]).decode().partition(":")
            )
            assert login == user and len(password) >= 24
            assert password not in status and password not in env
