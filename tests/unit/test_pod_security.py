"""Every pod converged creates passes Pod Security `restricted`: Job, JobSet, MPIJob launcher and workers,
the allocation Job, and what a MiniCluster asks of the Flux operator; the shared filesystem is a claim.

`restricted_violations` restates the checks of the Pod Security Standards' `restricted` level
(https://kubernetes.io/docs/concepts/security/pod-security-standards/) for a PodSpec; the live check
(the API server's own admission in a namespace enforcing `restricted`) is
tests/integration/test_pod_security.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from converged_bridge.allocation.paths import build_allocation_paths
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.backends.kueue.allocation import build_allocation_job
from converged_bridge.backends.kueue.operators import build_operator_object
from converged_bridge.backends.kueue.operators.common import KueueSite, RunAs, build_pod_spec
from converged_bridge.backends.kueue.operators.minicluster import build_minicluster
from converged_bridge.backends.kueue.operators.security import secure_pod_spec
from converged_bridge.backends.kueue.operators.shared import SharedVolume, parse_shared_volumes

UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
SITE = KueueSite(shared_volumes=(SharedVolume("/shared"),))
ALICE = replace(SITE, run_as=RunAs(1001, 1001, "alice"))
# volume types the restricted level allows
ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What in `pod` (a PodSpec) the `restricted` level refuses (baseline's checks included)."""
    out: list[str] = []
    ctx = pod.get("securityContext", {})
    containers = [*pod.get("initContainers", []), *pod.get("containers", [])]
    if not containers:
        out.append("no containers")
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            out.append(host)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            out.append(f"volume {volume['name']}: {', '.join(sorted(kinds - ALLOWED_VOLUMES))}")
    if ctx.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    pod_seccomp = (ctx.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        out.append(f"pod seccomp {pod_seccomp}")
    for c in containers:
        sc = c.get("securityContext", {})
        name = c.get("name", "?")
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities not dropped")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities added")
        if not sc.get("runAsNonRoot", ctx.get("runAsNonRoot")):
            out.append(f"{name}: runAsNonRoot not true")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccomp {seccomp}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
    return out


def make_step(
    operator: str, rule_images: list[dict[str, str]] | None = None, **resources: Any
) -> WorkflowStep:
    return WorkflowStep.model_validate(
        {
            "apiVersion": "converged.dev/v1alpha1",
            "kind": "WorkflowStep",
            "metadata": {"name": f"s-{operator}", "namespace": "alice", "uid": UID},
            "spec": {
                "workflow": {"runId": "r1", "rule": "map", "jobId": 1},
                "backend": "kueue",
                "operator": operator,
                "image": "localhost/step:1",
                "command": ["python3", "-c", "print(1)"],
                "workingDir": "/shared/wf",
                "resources": {"cpus": 1, "memMiB": 256, "runtimeMinutes": 5, **resources},
                **({"ruleImages": rule_images} if rule_images else {}),
            },
        }
    )


def pods_of(operator: str, site: KueueSite) -> dict[str, dict[str, Any]]:
    """Every PodSpec template of the step's object, by role."""
    step = make_step(operator, nodes=2, tasks=2) if operator != "job" else make_step(operator)
    body = build_operator_object(step, site).body
    spec = body["spec"]
    if operator == "job":
        return {"job": spec["template"]["spec"]}
    if operator == "jobset":
        return {"jobset": spec["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]}
    return {role: r["template"]["spec"] for role, r in spec["mpiReplicaSpecs"].items()}


@pytest.mark.parametrize("site", [SITE, ALICE], ids=["image-user", "namespace-identity"])
@pytest.mark.parametrize("operator", ["job", "jobset", "mpijob"])
def test_every_pod_of_every_operator_is_restricted(operator: str, site: KueueSite) -> None:
    pods = pods_of(operator, site)
    assert len(pods) == (2 if operator == "mpijob" else 1)  # the MPIJob's launcher and its workers
    for role, pod in pods.items():
        assert restricted_violations(pod) == [], role
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            assert c["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            }
            assert c["volumeMounts"] == [{"name": "shared-0", "mountPath": "/shared"}]
        assert pod["volumes"] == [
            {"name": "shared-0", "persistentVolumeClaim": {"claimName": "converged-shared"}}
        ]
        if site.run_as:
            assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (1001, 1001)
        else:
            assert "runAsUser" not in pod["securityContext"]


def test_the_checker_catches_what_restricted_refuses() -> None:
    """The checker above can fail: yesterday's pod (hostPath, no securityContext) fails it on each count."""
    pod = {
        "restartPolicy": "Never",
        "securityContext": {"runAsUser": 0},
        "containers": [{"name": "step", "image": "x", "ports": [{"containerPort": 22, "hostPort": 22}]}],
        "volumes": [{"name": "shared-0", "hostPath": {"path": "/shared", "type": "Directory"}}],
    }
    assert restricted_violations(pod) == [
        "volume shared-0: hostPath",
        "pod runAsUser 0",
        "step: allowPrivilegeEscalation not false",
        "step: capabilities not dropped",
        "step: runAsNonRoot not true",
        "step: seccomp None",
        "step: hostPort",
    ]


@pytest.mark.parametrize("site", [SITE, ALICE], ids=["image-user", "namespace-identity"])
def test_a_rule_image_pod_is_restricted_driver_and_sidecars(site: KueueSite) -> None:
    rule_images = [{"url": "docker://registry.site:5443/alice/bwa:1", "path": "/wf/a.simg"}]
    step = make_step("job", rule_images=rule_images)
    pod = build_operator_object(step, site).body["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["rule-0"]  # the rule's native sidecar
    assert restricted_violations(pod) == []


def test_an_init_container_and_a_sidecar_are_restricted_too() -> None:
    """A pod spec's initContainers (a native sidecar among them) get the container securityContext as
    well; a builder's own fields stay unless restricted needs them otherwise."""
    step = make_step("job")
    sidecar = {
        "name": "runner",
        "image": "x",
        "restartPolicy": "Always",
        "securityContext": {"readOnlyRootFilesystem": True},
    }
    pod = build_pod_spec(step, ALICE, [{"name": "step", "image": "x"}])
    pod["initContainers"] = [sidecar]
    pod = secure_pod_spec(pod, 1001, 1001)
    assert restricted_violations(pod) == []
    assert sidecar["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


@pytest.mark.parametrize("site", [SITE, ALICE], ids=["image-user", "namespace-identity"])
def test_the_allocation_pod_is_restricted(site: KueueSite) -> None:
    alloc = StepAllocation.model_validate(
        {
            "metadata": {"name": "sm-1-g2", "namespace": "alice", "uid": UID},
            "spec": {
                "runId": "sm-1",
                "group": "g2",
                "backend": "kueue",
                "image": "localhost/step:1",
                "workingDir": "/shared/run",
                "resources": {"cpus": 1, "memMiB": 256},
                "slots": 2,
                "runtimeMinutes": 30,
                "kueue": {"localQueue": "default"},
            },
        }
    )
    pod = build_allocation_job(alloc, site, build_allocation_paths(alloc)).body["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["volumes"] == [
        {"name": "shared-0", "persistentVolumeClaim": {"claimName": "converged-shared"}}
    ]


def test_a_minicluster_asks_the_flux_operator_for_restricted_pods_and_the_claim() -> None:
    spec = build_minicluster(make_step("minicluster", nodes=2, tasks=2), ALICE).body["spec"]
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert spec["pod"]["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 1001,
        "runAsGroup": 1001,
    }
    assert spec["containers"][0]["securityContext"] == restricted
    assert spec["flux"]["container"]["securityContext"] == restricted
    assert spec["containers"][0]["volumes"] == {
        "shared-0": {"path": "/shared", "claimName": "converged-shared"}
    }


def test_shared_paths_name_claims() -> None:
    assert parse_shared_volumes("") == ()
    assert parse_shared_volumes("/shared/") == (SharedVolume("/shared", "converged-shared"),)
    assert parse_shared_volumes(" /home=home , /scratch=scratch-1") == (
        SharedVolume("/home", "home"),
        SharedVolume("/scratch", "scratch-1"),
    )
    with pytest.raises(ValueError) as e:
        parse_shared_volumes("data,/a,/b,/c=Bad_Name")
    assert str(e.value) == (
        "data: the path must be absolute; /c=Bad_Name: Bad_Name is not a PersistentVolumeClaim name; "
        "data, /a, /b all name the claim converged-shared: give each path its own (PATH=CLAIM)"
    )
