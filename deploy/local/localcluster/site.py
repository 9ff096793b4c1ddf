"""The local cluster as a site: what a site admin does (docs/admin.md), done by `cluster up`.

- The CRDs, then the daemon as the Deployment of deploy/kubernetes through the overlay deploy/local/site
  (its image built here, daemon_image.py): two replicas, leader election, probes, metrics.
- SlurmCluster `hpc1`: slurmrestd on the host's bridge address (where the daemon's pods reach it),
  steps in the step image's SIF through Apptainer, the shared directory and the Slurm client bound (MPI
  steps), each user's namespace mapped to their Slurm user; the JWTs in Secrets of converged-system.
- Users alice and bob: a namespace each (annotated with their uid and gid, which their Kubernetes pods
  run as), a LocalQueue `default` on the real node's ClusterQueue, the site's defaults for their runs
  (ConfigMap `converged-site`), RBAC (`converged-user` in their namespace, the capacity reads for the
  group `converged-users`), a client certificate and a kubeconfig in their home whose context is their
  namespace, and a directory of their own on the shared filesystem.
"""

from __future__ import annotations

import json
import pwd
import shutil
from pathlib import Path
from typing import Any

from . import apptainer, containerd, daemon_image, images, kube, kubeconfig, pki, procs, slurm
from .layout import HERE, Layout
from .procs import ClusterError

REPO = HERE.parents[1]
OVERLAY = HERE / "site"
SYSTEM_NS = "converged-system"
CLUSTER = "hpc1"  # the SlurmCluster of the local Slurm 22.05 cluster
USERS = ("alice", "bob")  # each has a namespace of the same name, mapped to the Slurm user of that name
USERS_GROUP = "converged-users"
QUEUE = "default"  # each user's LocalQueue, on the real node's ClusterQueue
REAL_CLUSTER_QUEUE = "real"
TOKEN_LIFESPAN_S = 30 * 24 * 3600
FIELD_MANAGER = "converged-site"


def user_dir(layout: Layout, user: str) -> Path:
    """The user's own directory on the shared filesystem (where their workflows live)."""
    return layout.shared / "users" / user


def token_ref(user: str) -> dict[str, str]:
    return {"namespace": SYSTEM_NS, "name": f"slurm-token-{user}", "key": "token"}


def build_slurm_cluster(layout: Layout) -> dict[str, Any]:
    return {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "SlurmCluster",
        "metadata": {"name": CLUSTER},
        "spec": {
            "transport": "restd",
            "restd": {
                "url": f"http://{containerd.HOST_ADDRESS}:{layout.ports.slurmrestd}",
                "user": "root",
                "tokenSecretRef": token_ref("root"),
            },
            "userMapping": [{"namespace": u, "user": u, "tokenSecretRef": token_ref(u)} for u in USERS],
            "containerRuntime": "apptainer",
            "bindPaths": slurm.bind_paths(layout),
            "defaults": {"partition": "cpu", "account": "default"},
        },
    }


def build_user_objects(layout: Layout, user: str, uid: int, gid: int) -> list[dict[str, Any]]:
    """A user's namespace, LocalQueue, site defaults and RoleBinding (pure)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": user,
                "annotations": {
                    "converged.dev/run-as-user": str(uid),
                    "converged.dev/run-as-group": str(gid),
                    "converged.dev/run-as-name": user,  # USER and LOGNAME in its pods
                },
            },
        },
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": QUEUE, "namespace": user},
            "spec": {"clusterQueue": REAL_CLUSTER_QUEUE},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "converged-site", "namespace": user},
            "data": {
                "image": images.step(layout).stable_ref,  # Kubernetes-backed steps
                "slurmImage": str(apptainer.stable_sif(layout)),  # Slurm-backed steps, under Apptainer
                "localQueue": QUEUE,
                "sharedPaths": str(layout.shared),
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "converged-user", "namespace": user},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "converged-user",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    ]


def build_site_objects(
    layout: Layout, tokens: dict[str, str], ids: dict[str, tuple[int, int]]
) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NS}},
        *(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": f"slurm-token-{user}", "namespace": SYSTEM_NS},
                "stringData": {"token": token},
            }
            for user, token in tokens.items()
        ),
        build_slurm_cluster(layout),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "converged-users-capacity"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "converged-user-capacity",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": USERS_GROUP}],
        },
    ]
    for user, (uid, gid) in ids.items():
        objects += build_user_objects(layout, user, uid, gid)
    return objects


def _apply(layout: Layout, objects: list[dict[str, Any]]) -> None:
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    kube.kubectl(
        layout,
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        input=doc,
    )


def _user_kubeconfig(layout: Layout, user: str) -> Path:
    """A client certificate (CN=<user>, O=converged-users) and a kubeconfig in the user's home."""
    pki.cert(layout.pki, f"user-{user}", f"/O={USERS_GROUP}/CN={user}")
    pw = pwd.getpwnam(user)
    kube_dir = Path(pw.pw_dir) / ".kube"
    files = kube_dir / "converged-local"
    files.mkdir(parents=True, exist_ok=True)
    for src, dst in (
        ("ca.crt", "ca.crt"),
        (f"user-{user}.crt", "client.crt"),
        (f"user-{user}.key", "client.key"),
    ):
        shutil.copyfile(layout.pki / src, files / dst)
    config = kube_dir / "config"
    config.write_text(
        kubeconfig.build_kubeconfig(
            f"https://127.0.0.1:{layout.ports.apiserver}",
            files / "ca.crt",
            files / "client.crt",
            files / "client.key",
            user,
            namespace=user,
        )
    )
    for path in (kube_dir, files, *files.iterdir(), config):
        shutil.chown(path, pw.pw_uid, pw.pw_gid)
        path.chmod(0o700 if path.is_dir() else 0o600)
    return config


def _daemon(layout: Layout) -> None:
    """The overlay applied; a new image restarts the Deployment; wait until it is available."""
    img = daemon_image.up(layout)
    kube.kubectl(
        layout,
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        "-k",
        str(OVERLAY),
    )
    digest = (img.dir / "manifest-digest").read_text().strip()
    seen = layout.component_dir("site") / "daemon-digest"
    seen.parent.mkdir(parents=True, exist_ok=True)
    if seen.exists() and seen.read_text().strip() != digest:
        kube.kubectl(layout, "-n", SYSTEM_NS, "rollout", "restart", "deployment/converged-daemon")
    seen.write_text(digest + "\n")
    kube.kubectl(
        layout, "-n", SYSTEM_NS, "rollout", "status", "deployment/converged-daemon", "--timeout=180s"
    )


def _mirrored(layout: Layout) -> bool:
    nodes = kube.kubectl(layout, "get", "nodes", "-l", f"converged.dev/slurm-cluster={CLUSTER}", "-o", "name")
    return bool(nodes.strip())


def up(layout: Layout) -> None:
    kube.apply_crds(layout, REPO / "crds")
    ids = {}
    for user in USERS:
        pw = pwd.getpwnam(user)
        ids[user] = (pw.pw_uid, pw.pw_gid)
        home = user_dir(layout, user)
        home.mkdir(parents=True, exist_ok=True)
        shutil.chown(home, pw.pw_uid, pw.pw_gid)
    (layout.shared / "users").chmod(0o755)
    tokens = {user: slurm.mint_token(user, TOKEN_LIFESPAN_S) for user in ("root", *USERS)}
    _apply(layout, build_site_objects(layout, tokens, ids))
    for user in USERS:
        _user_kubeconfig(layout, user)
    _daemon(layout)
    procs.wait_until(
        "the daemon to mirror SlurmCluster hpc1 (its virtual Nodes)", lambda: _mirrored(layout), 90
    )


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    try:
        out = kube.kubectl(
            layout, "-n", SYSTEM_NS, "get", "deployment", "converged-daemon", "-o", "json", check=False
        )
        status = json.loads(out).get("status", {}) if out.strip() else {}
        ready = int(status.get("readyReplicas") or 0)
        wanted = int(status.get("replicas") or 0)
        mirrored = _mirrored(layout)
    except (ClusterError, ValueError) as e:
        return [("site daemon", False, str(e))]
    ok = wanted > 0 and ready == wanted and mirrored
    detail = f"converged-daemon {ready}/{wanted} ready; SlurmCluster {CLUSTER} " + (
        "mirrored" if mirrored else "not mirrored"
    )
    return [("site daemon", ok, detail)]


def env(layout: Layout) -> dict[str, str]:
    return {"CONVERGED_SITE_SLURM_CLUSTER": CLUSTER, "CONVERGED_SITE_USERS": ",".join(USERS)}
