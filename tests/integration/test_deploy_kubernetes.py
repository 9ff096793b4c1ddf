"""deploy/kubernetes against the local cluster: the kustomization is accepted by the API server, and
`converged-daemon` does its work with exactly the permissions its RBAC grants.

The daemon runs as a process with a kubeconfig holding a token of the ServiceAccount converged-daemon,
mirroring a SlurmCluster of its own (`converged-deploy`, so nothing other tests use is touched): it
creates the virtual Nodes, ResourceFlavors, ClusterQueue and status, holds the leader Lease, and deletes
what it mirrored when the SlurmCluster goes. The RBAC objects and that SlurmCluster are removed at the
end; the CRDs and the namespace stay.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import ROOT, SYSTEM_NS, TEST_LABELS, apply, eventually, kubectl, slurm_cluster
from tests.integration.test_daemon import DaemonProcess, get_json

pytestmark = pytest.mark.integration

DEPLOY = ROOT / "deploy" / "kubernetes"
ACCOUNT = f"system:serviceaccount:{SYSTEM_NS}:converged-daemon"
LEASE = "converged-daemon"  # the only leader Lease the Role lets the daemon read and renew
CLUSTER = "converged-deploy"
NODES = (f"slurm-{CLUSTER}-cpu", f"slurm-{CLUSTER}-gpu")
QUEUE = f"slurm-{CLUSTER}"
SERVER = "https://127.0.0.1:6443"
CA = Path("/var/lib/converged-local/pki/ca.crt")
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")

# (verb, resource, namespace or "", expected) — what the daemon's calls need, and what it must not do
PERMISSIONS = [
    ("patch", "workflowsteps.converged.dev/status", "team-a", True),
    ("watch", "workflowsteps.converged.dev", "team-a", True),
    ("patch", "slurmclusters.converged.dev/status", "", True),
    ("create", "nodes", "", True),
    ("patch", "nodes/status", "", True),
    ("delete", "clusterqueues.kueue.x-k8s.io", "", True),
    ("create", "jobs.batch", "team-a", True),
    ("create", "jobsets.jobset.x-k8s.io", "team-b", True),
    ("list", "workloads.kueue.x-k8s.io", "", True),
    ("list", "pods", "", True),
    ("create", "events", "team-a", True),
    ("get", "secrets", SYSTEM_NS, True),
    ("update", "leases.coordination.k8s.io/converged-daemon", SYSTEM_NS, True),
    ("patch", "leases.coordination.k8s.io", "kube-node-lease", True),
    ("delete", "namespaces", "", False),
    ("list", "secrets", SYSTEM_NS, False),
    ("watch", "secrets", "", False),
    ("update", "leases.coordination.k8s.io/kube-controller-manager", "kube-system", False),
    ("patch", "leases.coordination.k8s.io", "kube-system", False),
    ("update", "leases.coordination.k8s.io/other", SYSTEM_NS, False),
    ("delete", "workflowsteps.converged.dev", "team-a", False),
    ("create", "pods", "team-a", False),
    ("get", "pods/log", "team-a", False),
    ("update", "nodes", "", False),
    ("create", "clusterroles.rbac.authorization.k8s.io", "", False),
    ("patch", "slurmclusters.converged.dev", "", False),
]


def rendered(env: dict[str, str]) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize deploy/kubernetes` produces."""
    return [o for o in yaml.safe_load_all(kubectl(env, "kustomize", str(DEPLOY))) if o]


def can_i(env: dict[str, str], verb: str, resource: str, namespace: str) -> bool:
    resource, _, subresource = resource.partition("/")
    args = ["auth", "can-i", verb, resource, f"--as={ACCOUNT}"]
    if subresource in ("status", "log"):
        args.append(f"--subresource={subresource}")
    elif subresource:
        args[3] = f"{resource}/{subresource}"  # a resource name
    args.append(f"--namespace={namespace}" if namespace else "--all-namespaces")
    return kubectl(env, *args, check=False).strip() == "yes"


def delete(env: dict[str, str], kind: str, name: str, namespace: str | None = None) -> None:
    where = [f"--namespace={namespace}"] if namespace else []
    kubectl(env, "delete", kind, name, *where, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture(scope="module")
def rbac(slurm_identities: dict[str, str]) -> Iterator[dict[str, str]]:
    """The kustomization's ServiceAccount, roles and bindings, applied for real (no Deployment)."""
    env = slurm_identities
    objects = [o for o in rendered(env) if o["kind"] in RBAC_KINDS]
    apply(env, *objects)
    try:
        yield env
    finally:
        for o in objects:
            delete(env, o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))


def remove_mirrored(env: dict[str, str]) -> None:
    """The test's SlurmCluster, what the daemon mirrored of it, and the leader Lease."""
    delete(env, "slurmcluster", CLUSTER)
    for n in NODES:
        delete(env, "node", n)
        delete(env, "resourceflavor", n)
    delete(env, "clusterqueue", QUEUE)
    delete(env, "lease", LEASE, SYSTEM_NS)


def write_kubeconfig(path: Path, token: str) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": SERVER, "certificate-authority": str(CA)}}],
        "users": [{"name": "converged-daemon", "user": {"token": token}}],
        "contexts": [
            {
                "name": "converged-daemon",
                "context": {"cluster": "local", "user": "converged-daemon", "namespace": SYSTEM_NS},
            }
        ],
        "current-context": "converged-daemon",
    }
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


def test_kustomization_is_accepted_by_the_api_server(converged_crds: dict[str, str]) -> None:
    out = kubectl(converged_crds, "apply", "-k", str(DEPLOY), "--dry-run=server")
    for kind, name in [
        ("serviceaccount", "converged-daemon"),
        ("clusterrole.rbac.authorization.k8s.io", "converged-daemon"),
        ("clusterrolebinding.rbac.authorization.k8s.io", "converged-daemon"),
        ("role.rbac.authorization.k8s.io", "converged-daemon-leader-election"),
        ("rolebinding.rbac.authorization.k8s.io", "converged-daemon-leader-election"),
        ("role.rbac.authorization.k8s.io", "converged-daemon-node-heartbeat"),
        ("rolebinding.rbac.authorization.k8s.io", "converged-daemon-node-heartbeat"),
        ("deployment.apps", "converged-daemon"),
    ]:
        assert f"{kind}/{name} " in out, out
    rules = [r for o in rendered(converged_crds) for r in o.get("rules", [])]
    assert rules
    assert not [r for r in rules if "*" in r["verbs"] + r["resources"] + r["apiGroups"]]


def test_service_account_may_do_what_the_daemon_does_and_no_more(rbac: dict[str, str]) -> None:
    wrong = [
        f"{verb} {resource} in {namespace or 'all namespaces'}: expected {'yes' if expected else 'no'}"
        for verb, resource, namespace, expected in PERMISSIONS
        if can_i(rbac, verb, resource, namespace) != expected
    ]
    assert not wrong, wrong


def test_daemon_mirrors_and_leads_with_only_its_service_account(rbac: dict[str, str], tmp_path: Path) -> None:
    env = rbac
    assert CA.exists(), CA
    token = kubectl(env, "create", "token", "converged-daemon", f"--namespace={SYSTEM_NS}", "--duration=1h")
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", token.strip())
    as_daemon = {**env, "KUBECONFIG": str(kubeconfig)}
    assert kubectl(as_daemon, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}") == ACCOUNT
    delete(env, "lease", LEASE, SYSTEM_NS)
    apply(env, slurm_cluster(CLUSTER, env))
    proc = DaemonProcess(env, tmp_path / "daemon.log", LEASE, kubeconfig=str(kubeconfig))
    try:
        proc.start(f"--clusters={CLUSTER}")
        eventually("the daemon leading", lambda: proc.metric("converged_daemon_leader") == 1, timeout=60)
        lease = get_json(env, "lease", "-n", SYSTEM_NS, LEASE)["spec"]
        assert lease["holderIdentity"] == proc.identity

        def mirrored() -> bool:
            nodes = kubectl(env, "get", "nodes", "-o", "name")
            flavors = kubectl(env, "get", "resourceflavors", "-o", "name")
            status = get_json(env, "slurmcluster", CLUSTER).get("status") or {}
            return (
                all(f"node/{n}" in nodes and n in flavors for n in NODES)
                and bool(kubectl(env, "get", "clusterqueue", QUEUE, "--ignore-not-found"))
                and bool(status.get("partitions"))
            )

        eventually("the SlurmCluster mirrored", mirrored, timeout=90)
        for n in NODES:
            ready = next(c for c in get_json(env, "node", n)["status"]["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True", ready
        eventually("node heartbeats", lambda: proc.metric("converged_daemon_node_heartbeats_total") >= 2)
        assert get_json(env, "lease", "-n", "kube-node-lease", NODES[0])["spec"]["holderIdentity"] == NODES[0]

        delete(env, "slurmcluster", CLUSTER)
        eventually(
            "the mirrored objects deleted",
            lambda: (
                not any(n in kubectl(env, "get", "nodes", "-o", "name") for n in NODES)
                and not kubectl(env, "get", "clusterqueue", QUEUE, "--ignore-not-found")
            ),
            timeout=60,
        )
        assert proc.metric("converged_daemon_kube_write_errors_total") == 0, proc.log.read_text()[-3000:]
        assert "forbidden" not in proc.log.read_text().lower(), proc.log.read_text()[-3000:]
    finally:
        proc.stop()
        remove_mirrored(env)


def test_hosted_controller_drives_steps_on_both_backends_with_only_its_service_account(
    rbac: dict[str, str], tmp_path: Path, workdir: Path
) -> None:
    """The daemon's own controller (not --no-controller), under the ServiceAccount's token: a Slurm step
    (submitted as alice for team-a, through the SlurmCluster the daemon mirrors) and a Kueue Job step (on
    the kwok nodes) both succeed, and deleting them goes through the finalizer the controller removes."""
    env = rbac
    token = kubectl(env, "create", "token", "converged-daemon", f"--namespace={SYSTEM_NS}", "--duration=1h")
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", token.strip())
    selector = f"converged.dev/test=daemon-sa-{uuid.uuid4().hex[:6]}"  # only this test's steps
    key, _, value = selector.partition("=")
    delete(env, "lease", LEASE, SYSTEM_NS)
    apply(
        env,
        slurm_cluster(CLUSTER, env),
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": "default", "namespace": "team-a"},
            "spec": {"clusterQueue": "default"},
        },
    )
    common = {"command": ["true"], "resources": {"cpus": 1, "memMiB": 64, "runtimeMinutes": 5}}
    steps = {
        "sa-slurm": {
            **common,
            "workflow": {"runId": "daemon-sa", "rule": "slurm", "jobId": 1},
            "backend": "slurm",
            "slurm": {"cluster": CLUSTER, "partition": "cpu"},
            "workingDir": str(workdir),
        },
        "sa-kueue": {
            **common,
            "workflow": {"runId": "daemon-sa", "rule": "kueue", "jobId": 2},
            "backend": "kueue",
            "kueue": {"localQueue": "default"},
            "image": "registry.invalid/converged/never-pulled-on-kwok:1",
        },
    }
    manifests = [
        {
            "apiVersion": "converged.dev/v1alpha1",
            "kind": "WorkflowStep",
            "metadata": {
                "name": f"{name}-{value[-6:]}",
                "namespace": "team-a",
                "labels": {key: value, **TEST_LABELS},
            },
            "spec": spec,
        }
        for name, spec in steps.items()
    ]
    proc = DaemonProcess(env, tmp_path / "daemon.log", LEASE, kubeconfig=str(kubeconfig))
    try:
        proc.start(
            f"--clusters={CLUSTER}",
            f"--controller-label-selector={selector}",
            "--controller-poll-interval=1",
            "--controller-cluster-refresh=2",
            controller=True,
        )
        eventually("the daemon leading", lambda: proc.metric("converged_daemon_leader") == 1, timeout=60)
        apply(env, *manifests)

        def phases() -> dict[str, str]:
            out = get_json(env, "wfs", "-n", "team-a", "-l", selector)["items"]
            return {o["spec"]["backend"]: o.get("status", {}).get("phase", "") for o in out}

        eventually(
            "both steps succeeded", lambda: phases() == {"slurm": "Succeeded", "kueue": "Succeeded"}, 120
        )
        kubectl(env, "delete", "wfs", "-n", "team-a", "-l", selector, "--wait=false")
        eventually("the steps deleted through the finalizer", lambda: phases() == {}, timeout=60)
        text = proc.log.read_text()
        assert "forbidden" not in text.lower(), text[-3000:]
        assert proc.metric("converged_daemon_kube_write_errors_total") == 0, text[-3000:]
    finally:
        proc.stop()
        kubectl(env, "delete", "wfs", "-n", "team-a", "-l", selector, "--wait=false", check=False)
        remove_mirrored(env)
