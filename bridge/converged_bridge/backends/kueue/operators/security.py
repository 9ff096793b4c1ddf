"""What makes every pod converged creates pass Pod Security `restricted` (pure).

The `restricted` level (https://kubernetes.io/docs/concepts/security/pod-security-standards/) wants, of
every container and initContainer: no privilege escalation (`allowPrivilegeEscalation: false`, which
sets the kernel's no_new_privs: a setuid binary gains nothing), every capability dropped, a non-root
user and the runtime's default seccomp profile; and no hostPath volume (shared.py mounts a claim). The
pod-level fields cover every container; the container-level ones exist only per container.
"""

from __future__ import annotations

from typing import Any

RUNTIME_DEFAULT_SECCOMP = {"type": "RuntimeDefault"}


def build_pod_security_context(uid: int | None, gid: int | None) -> dict[str, Any]:
    """The pod's securityContext: never root, seccomp `RuntimeDefault`; as `uid`:`gid` when given (else
    as the image's USER, which the kubelet refuses to start when it is root)."""
    context: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": dict(RUNTIME_DEFAULT_SECCOMP)}
    if uid is not None:
        context["runAsUser"] = uid
    if gid is not None:
        context["runAsGroup"] = gid
    return context


def build_container_security_context() -> dict[str, Any]:
    """A container's securityContext: no privilege escalation, no capabilities."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def secure_pod_spec(pod: dict[str, Any], uid: int | None = None, gid: int | None = None) -> dict[str, Any]:
    """`pod` (a PodSpec) with the pod's securityContext and every container's and initContainer's (the
    fields a builder set itself are kept, the restricted ones win). Returns `pod`, changed in place."""
    pod["securityContext"] = {**pod.get("securityContext", {}), **build_pod_security_context(uid, gid)}
    for container in (*pod.get("initContainers", []), *pod.get("containers", [])):
        container["securityContext"] = {
            **container.get("securityContext", {}),
            **build_container_security_context(),
        }
    return pod
