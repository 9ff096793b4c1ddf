"""The local cluster as a site: what a site admin does (docs/admin.md), done by `cluster up`.

- The CRDs, then the daemon as the Deployment of deploy/kubernetes through the overlay deploy/local/site
  (its image built here, daemon_image.py): two replicas, leader election, probes, metrics.
- SlurmCluster `hpc1`: slurmrestd on the host's bridge address (where the daemon's pods reach it),
  steps in the step image's SIF through Apptainer, the shared directory and the Slurm client bound (MPI
  steps), each user's namespace mapped to their Slurm user; the JWTs in Secrets of converged-system.
- SlurmCluster `hpc2` (Slurm 26.05, hpc2/): the same, with JWTs of its own (Secrets
  `slurm-hpc2-token-<user>`) and only the shared directory bound: sid's srun needs sid's C library,
  which the bookworm step image lacks, so MPI steps that start their ranks with it cannot run there.
- Users alice and bob: a namespace each (annotated with their uid and gid, which their Kubernetes pods
  run as, and enforcing Pod Security `restricted`), the shared filesystem as a PersistentVolumeClaim
  `converged-shared` bound to a hostPath PersistentVolume of its own (pods may not mount hostPath under
  `restricted`; PersistentVolumes are the admin's and Pod Security does not check them), a LocalQueue
  `default` on the real node's ClusterQueue, the site's defaults for their runs
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

from . import apptainer, containerd, daemon_image, hpc2, images, kube, kubeconfig, pki, procs, slurm
from .layout import HERE, Layout
from .procs import ClusterError

REPO = HERE.parents[1]
OVERLAY = HERE / "site"
SYSTEM_NS = "converged-system"
CLUSTER = "hpc1"  # the SlurmCluster of the local Slurm 22.05 cluster
CLUSTER2 = hpc2.CLUSTER  # the SlurmCluster of the local Slurm 26.05 cluster
CLUSTERS = (CLUSTER, CLUSTER2)
USERS = ("alice", "bob")  # each has a namespace of the same name, mapped to the Slurm user of that name
USERS_GROUP = "converged-users"
QUEUE = "default"  # each user's LocalQueue, on the real node's ClusterQueue
REAL_CLUSTER_QUEUE = "real"
TOKEN_LIFESPAN_S = 30 * 24 * 3600
FIELD_MANAGER = "converged-site"
SHARED_CLAIM = "converged-shared"  # the claim of the shared filesystem in every namespace that runs pods
REAL_NODE_LABEL = {"converged.dev/node-kind": "real"}  # the node whose directory the PersistentVolumes are
# every level of Pod Security at `restricted`: enforced (pods refused), and warned/audited (workloads)
RESTRICTED = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}


def user_dir(layout: Layout, user: str) -> Path:
    """The user's own directory on the shared filesystem (where their workflows live)."""
    return layout.shared / "users" / user


def token_secret(cluster: str, user: str) -> str:
    """The Secret holding `user`'s JWT for `cluster` (hpc1's keep their first names)."""
    return f"slurm-token-{user}" if cluster == CLUSTER else f"slurm-{cluster}-token-{user}"


def token_ref(user: str, cluster: str = CLUSTER) -> dict[str, str]:
    return {"namespace": SYSTEM_NS, "name": token_secret(cluster, user), "key": "token"}


def build_slurm_cluster(layout: Layout, cluster: str = CLUSTER) -> dict[str, Any]:
    port, binds, mpi = layout.ports.slurmrestd, slurm.bind_paths(layout), True
    if cluster == CLUSTER2:
        # no MPI there: its ranks start with srun from inside the step image, and sid's srun needs a
        # newer C library than the (bookworm) step image has
        port, binds, mpi = layout.ports.hpc2_slurmrestd, [str(layout.shared)], False
    return {
        "apiVersion": "converged.dev/v1alpha1",
        "kind": "SlurmCluster",
        "metadata": {"name": cluster},
        "spec": {
            "transport": "restd",
            "restd": {
                "url": f"http://{containerd.HOST_ADDRESS}:{port}",
                "user": "root",
                "tokenSecretRef": token_ref("root", cluster),
            },
            "userMapping": [
                {"namespace": u, "user": u, "tokenSecretRef": token_ref(u, cluster)} for u in USERS
            ],
            "containerRuntime": "apptainer",
            "mpi": mpi,
            "bindPaths": binds,
            "defaults": {"partition": "cpu", "account": "default"},
        },
    }


def build_shared_claim(namespace: str, path: Path) -> list[dict[str, Any]]:
    """The shared directory `path` as the claim `converged-shared` of `namespace`: a hostPath
    PersistentVolume on the real node reserved for that claim (claimRef), and the claim bound to it (pure).
    One PersistentVolume per namespace: a volume binds to one claim."""
    volume = f"{SHARED_CLAIM}-{namespace}"
    size = {"storage": "1Ti"}  # nominal: a hostPath volume has no size; a claim asks for no more
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": size,
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",  # deleting the claim never touches the data
                "storageClassName": "",
                "claimRef": {"namespace": namespace, "name": SHARED_CLAIM},
                "hostPath": {"path": str(path), "type": "Directory"},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": k, "operator": "In", "values": [v]}
                                    for k, v in REAL_NODE_LABEL.items()
                                ]
                            }
                        ]
                    }
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": SHARED_CLAIM, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": size},
            },
        },
    ]


def build_user_objects(layout: Layout, user: str, uid: int, gid: int) -> list[dict[str, Any]]:
    """A user's namespace (Pod Security `restricted`), shared claim, LocalQueue, site defaults and
    RoleBinding (pure)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": user,
                "labels": dict(RESTRICTED),
                "annotations": {
                    "converged.dev/run-as-user": str(uid),
                    "converged.dev/run-as-group": str(gid),
                    "converged.dev/run-as-name": user,  # USER and LOGNAME in its pods
                },
            },
        },
        *build_shared_claim(user, layout.shared),
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
                "sharedPaths": f"{layout.shared}={SHARED_CLAIM}",  # PATH=CLAIM: pods mount the claim
                "controllerUid": "10001",  # the daemon's runAsUser (deploy/kubernetes/deployment.yaml)
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
    layout: Layout, tokens: dict[tuple[str, str], str], ids: dict[str, tuple[int, int]]
) -> list[dict[str, Any]]:
    """`tokens`: JWT by (SlurmCluster, user)."""
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": SYSTEM_NS, "labels": dict(RESTRICTED)},
        },
        *build_shared_claim(SYSTEM_NS, layout.shared),  # the daemon's (deploy/local/site/daemon.yaml)
        *(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": token_secret(cluster, user), "namespace": SYSTEM_NS},
                "stringData": {"token": token},
            }
            for (cluster, user), token in tokens.items()
        ),
        *(build_slurm_cluster(layout, cluster) for cluster in CLUSTERS),
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


def _unmirrored(layout: Layout) -> list[str]:
    """The site's SlurmClusters the daemon has not mirrored yet (no virtual Node of theirs)."""
    out = kube.kubectl(layout, "get", "nodes", "-l", "converged.dev/slurm-cluster", "-o", "json")
    labels = [n["metadata"]["labels"] for n in json.loads(out)["items"]]
    mirrored = {lab.get("converged.dev/slurm-cluster") for lab in labels}
    return [c for c in CLUSTERS if c not in mirrored]


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
    tokens = {(CLUSTER, user): slurm.mint_token(layout, user, TOKEN_LIFESPAN_S) for user in ("root", *USERS)}
    tokens |= {(CLUSTER2, user): hpc2.mint_token(layout, user, TOKEN_LIFESPAN_S) for user in ("root", *USERS)}
    _apply(layout, build_site_objects(layout, tokens, ids))
    for user in USERS:
        _user_kubeconfig(layout, user)
    _daemon(layout)
    procs.wait_until(
        f"the daemon to mirror SlurmClusters {', '.join(CLUSTERS)} (their virtual Nodes)",
        lambda: not _unmirrored(layout),
        90,
    )


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    try:
        out = kube.kubectl(
            layout, "-n", SYSTEM_NS, "get", "deployment", "converged-daemon", "-o", "json", check=False
        )
        status = json.loads(out).get("status", {}) if out.strip() else {}
        ready = int(status.get("readyReplicas") or 0)
        wanted = int(status.get("replicas") or 0)
        missing = _unmirrored(layout)
    except (ClusterError, ValueError, KeyError) as e:
        return [("site daemon", False, str(e))]
    ok = wanted > 0 and ready == wanted and not missing
    mirrored = [c for c in CLUSTERS if c not in missing]
    detail = (
        f"converged-daemon {ready}/{wanted} ready; SlurmClusters mirrored: {', '.join(mirrored) or 'none'}"
    )
    if missing:
        detail += f"; not mirrored: {', '.join(missing)}"
    return [("site daemon", ok, detail)]


def env(layout: Layout) -> dict[str, str]:
    return {
        "CONVERGED_SITE_SLURM_CLUSTER": CLUSTER,
        "CONVERGED_SITE_SLURM_CLUSTERS": ",".join(CLUSTERS),
        "CONVERGED_SITE_USERS": ",".join(USERS),
    }
