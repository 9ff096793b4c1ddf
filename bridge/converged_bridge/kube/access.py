"""Thin, counted access to the Kubernetes API for WorkflowSteps, SlurmClusters, Secrets and Events.

Every call goes through here so that tests and benchmarks can count API requests per step, and so
that the kubernetes client (and any kubeconfig) is touched only when a controller actually starts.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

from converged_bridge.errors import PermanentBackendError, TransientBackendError

GROUP = "converged.dev"
VERSION = "v1alpha1"
STEPS = "workflowsteps"
CLUSTERS = "slurmclusters"


def load_api_client(kubeconfig: str | None = None) -> Any:
    """An ApiClient from `kubeconfig`, else $KUBECONFIG / ~/.kube/config, else the in-cluster account.

    $KUBECONFIG is read now: the kubernetes client reads it once, when it is first imported, so a
    variable set later (by a test, or a host process before starting the executor) would be missed.
    """
    from kubernetes import client, config

    candidates = [kubeconfig] if kubeconfig else [*os.environ.get("KUBECONFIG", "").split(os.pathsep)]
    candidates.append(os.path.expanduser("~/.kube/config"))
    for path in (c for c in candidates if c):
        if os.path.exists(path):
            return config.new_client_from_config(config_file=path, persist_config=False)
    if kubeconfig:
        raise config.ConfigException(f"kubeconfig {kubeconfig} does not exist")
    config.load_incluster_config()
    return client.ApiClient()


def current_namespace(kubeconfig: str | None = None) -> str:
    """The namespace of the kubeconfig's current context, else `default`."""
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        return str(active.get("context", {}).get("namespace") or "default")
    except (config.ConfigException, OSError):
        return "default"


class NotFound(PermanentBackendError):
    """The object is gone."""


class AlreadyExists(PermanentBackendError):
    """The object to create is there already (created earlier by us: adopt it)."""


class Conflict(TransientBackendError):
    """Someone else changed the object; read it again and retry."""


def _translate(e: Exception, what: str) -> Exception:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(e, ApiException):
        if e.status == 404:
            return NotFound(f"{what}: not found")
        if e.status == 409:
            return Conflict(f"{what}: conflict")
        if e.status in (429, 500, 502, 503, 504):
            return TransientBackendError(f"{what}: HTTP {e.status} {e.reason}")
        return PermanentBackendError(f"{what}: HTTP {e.status} {e.reason}: {str(e.body)[:300]}")
    if isinstance(e, HTTPError | OSError):
        return TransientBackendError(f"{what}: {type(e).__name__}: {e}")
    return e


class KubeAccess:
    def __init__(self, api_client: Any, *, field_manager: str = "converged-controller") -> None:
        from kubernetes import client

        self._api_client = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self.field_manager = field_manager
        self.calls: Counter[str] = Counter()  # API requests made, by kind of request
        self._calls_lock = threading.Lock()  # the controller's appliers count from several threads
        self._host = socket.gethostname()

    def _do(self, kind: str, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self._count(kind)
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise _translate(e, what) from e

    def _count(self, kind: str) -> None:
        with self._calls_lock:
            self.calls[kind] += 1

    # --- WorkflowSteps ---
    def _steps_lister(self, namespace: str | None) -> tuple[Any, tuple[str, ...]]:
        if namespace:
            return self._custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, STEPS)
        return self._custom.list_cluster_custom_object, (GROUP, VERSION, STEPS)

    def list_steps(
        self, namespace: str | None = None, label_selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """WorkflowSteps (one namespace, or all) matching `label_selector`, and the resourceVersion."""
        fn, args = self._steps_lister(namespace)
        doc = self._do("list", "list workflowsteps", fn, *args, label_selector=label_selector)
        return list(doc.get("items", [])), str(doc["metadata"]["resourceVersion"])

    def watch_steps(
        self,
        resource_version: str,
        namespace: str | None = None,
        timeout_seconds: int = 300,
        label_selector: str = "",
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) events after `resource_version`; BOOKMARK events keep it fresh. Ends on timeout."""
        from kubernetes import watch

        self._count("watch")
        w = watch.Watch()
        fn, args = self._steps_lister(namespace)
        stream = w.stream(
            fn,
            *args,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout_seconds,
            label_selector=label_selector,
        )
        try:
            for event in stream:
                yield str(event["type"]), cast(dict[str, Any], event["object"])
        except Exception as e:
            raise _translate(e, "watch workflowsteps") from e
        finally:
            w.stop()

    def get_step(self, namespace: str, name: str) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self._do(
                "get",
                f"get workflowstep {namespace}/{name}",
                self._custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                STEPS,
                name,
            ),
        )

    def patch_step_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self._do(
                "patch-status",
                f"patch status of workflowstep {namespace}/{name}",
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                STEPS,
                name,
                {"status": status},
                field_manager=self.field_manager,
            ),
        )

    def patch_step_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str | None
    ) -> dict[str, Any]:
        """Replace metadata.finalizers; with `resource_version` the patch fails on a concurrent change."""
        meta: dict[str, Any] = {"finalizers": finalizers}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return cast(
            dict[str, Any],
            self._do(
                "patch-finalizers",
                f"patch finalizers of workflowstep {namespace}/{name}",
                self._custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                STEPS,
                name,
                {"metadata": meta},
                field_manager=self.field_manager,
            ),
        )

    # --- SlurmClusters and Secrets ---
    def list_slurm_clusters(self) -> list[dict[str, Any]]:
        doc = self._do(
            "list", "list slurmclusters", self._custom.list_cluster_custom_object, GROUP, VERSION, CLUSTERS
        )
        return list(doc.get("items", []))

    def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        secret = self._do(
            "get-secret",
            f"read secret {namespace}/{name}",
            self._core.read_namespaced_secret,
            name,
            namespace,
        )
        data = secret.data or {}
        if key not in data:
            raise PermanentBackendError(f"secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()

    # --- operator objects (Jobs, JobSets, MPIJobs, MiniClusters) and Kueue Workloads ---
    def list_objects(
        self, group: str, version: str, plural: str, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """All objects of a kind in every namespace (one LIST); [] when the kind is not served."""
        try:
            doc = self._do(
                "list",
                f"list {plural}.{group}",
                self._custom.list_cluster_custom_object,
                group,
                version,
                plural,
                label_selector=label_selector,
            )
        except NotFound:
            return []
        return list(doc.get("items", []))

    def served(self, group: str, version: str, plural: str) -> bool:
        """Whether the API server serves this kind (a cheap LIST with limit 1)."""
        try:
            self._do(
                "list",
                f"probe {plural}.{group}",
                self._custom.list_cluster_custom_object,
                group,
                version,
                plural,
                limit=1,
            )
        except NotFound:
            return False
        return True

    def create_object(
        self, group: str, version: str, plural: str, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        self._count("create")
        try:
            return cast(
                dict[str, Any],
                self._custom.create_namespaced_custom_object(
                    group, version, namespace, plural, body, field_manager=self.field_manager
                ),
            )
        except ApiException as e:
            if e.status == 409:
                raise AlreadyExists(f"{plural}.{group} {namespace}/{body['metadata']['name']} exists") from e
            raise _translate(e, f"create {plural}.{group} {namespace}/{body['metadata']['name']}") from e
        except Exception as e:
            raise _translate(e, f"create {plural}.{group}") from e

    def delete_object(self, group: str, version: str, plural: str, namespace: str, name: str) -> None:
        """Delete an object and, in the background, what it owns (its pods)."""
        try:
            self._do(
                "delete",
                f"delete {plural}.{group} {namespace}/{name}",
                self._custom.delete_namespaced_custom_object,
                group,
                version,
                namespace,
                plural,
                name,
                propagation_policy="Background",
            )
        except NotFound:
            return

    def list_pods(self, label_selector: str) -> list[dict[str, Any]]:
        """Pods in every namespace matching `label_selector`, as plain dicts (one LIST)."""
        pods = self._do(
            "list",
            f"list pods {label_selector}",
            self._core.list_pod_for_all_namespaces,
            label_selector=label_selector,
            _preload_content=False,
        )
        return list(json.loads(pods.data).get("items", []))

    # --- Pods ---
    def pod_names(self, namespace: str, label_selector: str) -> list[str]:
        pods = self._do(
            "list",
            f"list pods {label_selector}",
            self._core.list_namespaced_pod,
            namespace,
            label_selector=label_selector,
        )
        return sorted(p.metadata.name for p in pods.items)

    def pod_log(self, namespace: str, name: str, tail_lines: int | None = None) -> str:
        kwargs: dict[str, Any] = {"tail_lines": tail_lines} if tail_lines else {}
        return cast(
            str,
            self._do(
                "get-log",
                f"read log of pod {namespace}/{name}",
                self._core.read_namespaced_pod_log,
                name,
                namespace,
                **kwargs,
            ),
        )

    # --- Events ---
    def emit_event(
        self,
        obj: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        component: str = "converged-controller",
    ) -> None:
        """A core/v1 Event about `obj` (shown by kubectl describe). Failures are not fatal to the caller."""
        from kubernetes import client

        meta = obj["metadata"]
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{meta['name']}.{uuid.uuid4().hex[:16]}", namespace=meta["namespace"]
            ),
            involved_object=client.V1ObjectReference(
                api_version=obj.get("apiVersion"),
                kind=obj.get("kind"),
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            reason=reason[:128],
            message=message[:1024],
            type=type_,
            count=1,
            first_timestamp=now,
            last_timestamp=now,
            source=client.V1EventSource(component=component, host=self._host),
            reporting_component=f"converged.dev/{component}",
            reporting_instance=self._host,
        )
        self._do(
            "event",
            f"create event for {meta['namespace']}/{meta['name']}",
            self._core.create_namespaced_event,
            meta["namespace"],
            event,
        )
