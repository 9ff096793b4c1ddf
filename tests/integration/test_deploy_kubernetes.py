"""deploy/kubernetes against the local cluster: the kustomization is accepted by the API server, and
its ServiceAccount may do exactly what the daemon's calls need.

That the daemon does its work with those permissions is shown by the site itself: `cluster up` deploys
it from this kustomization (deploy/local/site), and tests/integration/test_site.py checks the deployed
Deployment's mirror and hosted controller.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.integration.conftest import ROOT, SYSTEM_NS, apply, kubectl

pytestmark = pytest.mark.integration

DEPLOY = ROOT / "deploy" / "kubernetes"
ACCOUNT = f"system:serviceaccount:{SYSTEM_NS}:converged-daemon"
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
    ("deletecollection", "workflowsteps.converged.dev", "team-a", True),  # finished runs past retention
    ("create", "workflowsteps.converged.dev", "team-a", False),
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


@pytest.fixture(scope="module")
def rbac(slurm_identities: dict[str, str]) -> dict[str, str]:
    """The kustomization's ServiceAccount, roles and bindings as the site runs them: `cluster up` applied
    them with the daemon's Deployment (deploy/local/site); applied again here, unchanged, and kept."""
    env = slurm_identities
    apply(env, *[o for o in rendered(env) if o["kind"] in RBAC_KINDS])
    return env


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
        ("clusterrole.rbac.authorization.k8s.io", "converged-user"),
        ("clusterrole.rbac.authorization.k8s.io", "converged-user-capacity"),
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
