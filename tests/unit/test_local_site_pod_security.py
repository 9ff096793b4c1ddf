"""The local site under Pod Security `restricted`: the users' namespaces and converged-system enforce it,
each has its own claim `converged-shared` bound to a PersistentVolume of the shared directory, the daemon
and its site settings name the claim, and the step image carries no setuid binary."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from localcluster import images, site
from localcluster.layout import HERE, Layout, Ports, read_versions

ROOT = HERE.parents[1]
RESTRICTED = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn", "audit")}


def layout(tmp_path: Path) -> Layout:
    return Layout(root=tmp_path, cache=tmp_path / "cache", ports=Ports(), versions=read_versions())


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": o
        for o in objects
        if o["kind"] == kind
    }


def test_every_namespace_that_runs_pods_enforces_restricted_and_has_its_own_shared_claim(
    tmp_path: Path,
) -> None:
    lay = layout(tmp_path)
    objects = site.build_site_objects(lay, {}, {"alice": (1001, 1001), "bob": (1002, 1002)})
    namespaces = of_kind(objects, "Namespace")
    assert sorted(namespaces) == ["/alice", "/bob", "/converged-system"]
    for ns in namespaces.values():
        assert ns["metadata"]["labels"] == RESTRICTED
    volumes, claims = of_kind(objects, "PersistentVolume"), of_kind(objects, "PersistentVolumeClaim")
    assert sorted(claims) == [
        "alice/converged-shared",
        "bob/converged-shared",
        "converged-system/converged-shared",
    ]
    for key, claim in claims.items():
        namespace = key.split("/")[0]
        volume = volumes[f"/{claim['spec']['volumeName']}"]["spec"]
        # reserved for this claim, the shared directory on the real node (where the pods run)
        assert volume["claimRef"] == {"namespace": namespace, "name": "converged-shared"}
        assert volume["hostPath"] == {"path": str(lay.shared), "type": "Directory"}
        term = volume["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"]
        assert term == [{"key": "converged.dev/node-kind", "operator": "In", "values": ["real"]}]
        assert volume["persistentVolumeReclaimPolicy"] == "Retain"
        assert volume["accessModes"] == claim["spec"]["accessModes"] == ["ReadWriteMany"]
        assert volume["storageClassName"] == claim["spec"]["storageClassName"] == ""
    assert len(volumes) == len(claims)  # one volume per claim: a volume binds once
    config = of_kind(objects, "ConfigMap")["alice/converged-site"]["data"]
    assert config["sharedPaths"] == f"{lay.shared}=converged-shared"


def test_the_daemon_runs_restricted_and_mounts_its_claim() -> None:
    deployment = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    namespace = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "namespace.yaml").read_text())
    assert namespace["metadata"]["labels"] == RESTRICTED
    local = yaml.safe_load((ROOT / "deploy" / "local" / "site" / "daemon.yaml").read_text())
    local_pod = local["spec"]["template"]["spec"]
    assert local_pod["volumes"] == [
        {"name": "shared", "persistentVolumeClaim": {"claimName": "converged-shared"}}
    ]
    args = local_pod["containers"][0]["args"]
    assert "--controller-shared-paths=/var/lib/converged-local/shared=converged-shared" in args


def test_a_users_namespace_from_deploy_kubernetes_enforces_restricted_with_the_claim() -> None:
    base = ROOT / "deploy" / "kubernetes" / "user-namespace"
    objects = {o["kind"]: o for o in yaml.safe_load_all((base / "namespace.yaml").read_text())}
    objects |= {o["kind"]: o for o in yaml.safe_load_all((base / "shared-claim.yaml").read_text())}
    assert objects["Namespace"]["metadata"]["labels"] == RESTRICTED
    claim = objects["PersistentVolumeClaim"]
    assert claim["metadata"] == {"name": "converged-shared", "namespace": "converged-user"}
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_setuid_and_setgid_bits_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    su, wall, cat = tmp_path / "usr/bin/su", tmp_path / "usr/bin/wall", tmp_path / "usr/bin/cat"
    for path, mode in ((su, 0o4755), (wall, 0o2755), (cat, 0o755)):
        path.write_text("")
        path.chmod(mode)
    (tmp_path / "usr/bin/sulink").symlink_to(su)
    assert images.drop_setuid(tmp_path) == ["usr/bin/su", "usr/bin/wall"]
    assert [stat.S_IMODE(p.stat().st_mode) for p in (su, wall, cat)] == [0o755, 0o755, 0o755]
    assert images.drop_setuid(tmp_path) == []
