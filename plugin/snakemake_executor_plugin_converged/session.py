"""The I/O shell of one snakemake run: the Kubernetes client, the capacity the router reads, the run's
WorkflowSteps, and (in embedded mode) the controller running in this process.

Everything here is created when snakemake creates the executor, never at import: importing the
plugin needs no cluster and no kubeconfig.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from converged_bridge.errors import BackendError, PermanentBackendError
from converged_bridge.routing import CapacityView, KueueQueueView
from converged_bridge.routing.capacity import map_kueue_queue, map_operators, map_slurm_clusters
from converged_bridge.timing import due
from converged_bridge.wire import CONTROLLER_LABEL, EMBEDDED, JOBSETS, MINICLUSTERS, MPIJOBS, RUN_LABEL
from snakemake_executor_plugin_converged.site import CONFIGMAP, SiteDefaults, parse_site_defaults

OPERATOR_KINDS = (JOBSETS, MPIJOBS, MINICLUSTERS)  # Job is built into Kubernetes

if TYPE_CHECKING:
    from converged_bridge.controller.runner import Controller
    from converged_bridge.kube.allocations import StepAllocations
    from converged_bridge.kube.core import KubeCore
    from converged_bridge.kube.objects import KubeObjects
    from converged_bridge.kube.steps import WorkflowSteps

log = logging.getLogger("converged.snakemake")


class RunSession:
    """One run's view of the cluster. Methods raise converged_bridge BackendErrors; the executor
    translates them into WorkflowErrors."""

    def __init__(
        self,
        steps: WorkflowSteps,
        *,
        allocations: StepAllocations | None = None,
        objects: KubeObjects | None = None,
        namespace: str,
        run_id: str,
        capacity_refresh: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.steps = steps
        self.allocations = allocations  # None: a session whose runs never group steps
        self._objects = objects  # for the capacity the router reads (None: a session that routes nothing)
        self.namespace = namespace
        self.run_id = run_id
        self._capacity_refresh = capacity_refresh
        self._clock = clock
        self._capacity: CapacityView | None = None
        self._capacity_read_at: float | None = None  # by `clock`; None: never read
        self.core: KubeCore | None = None
        self.controller: Controller | None = None

    @classmethod
    def connect(
        cls, *, kubeconfig: str | None, namespace: str, run_id: str, capacity_refresh: float
    ) -> RunSession:
        from converged_bridge.kube.allocations import StepAllocations
        from converged_bridge.kube.core import KubeCore, load_api_client
        from converged_bridge.kube.objects import KubeObjects
        from converged_bridge.kube.steps import WorkflowSteps
        from converged_bridge.wire import PLUGIN_FIELD_MANAGER

        try:
            api_client = load_api_client(kubeconfig)
        except Exception as e:  # the client's config errors, turned into our own
            where = kubeconfig or "$KUBECONFIG, ~/.kube/config or the in-cluster service account"
            raise PermanentBackendError(f"no Kubernetes credentials from {where}: {e}") from e
        core = KubeCore(api_client, field_manager=PLUGIN_FIELD_MANAGER)
        objects = KubeObjects(core)
        session = cls(
            WorkflowSteps(objects),
            allocations=StepAllocations(objects),
            objects=objects,
            namespace=namespace,
            run_id=run_id,
            capacity_refresh=capacity_refresh,
        )
        session.core = core
        return session

    # --- embedded controller ---
    def start_controller(self, poll_interval: float, shared_paths: str = "") -> None:
        """Run the WorkflowStep controller in this process, watching this namespace only; its step
        pods mount `shared_paths` (comma-separated PATH[=CLAIM]: the namespace's claims) at the same path."""
        from converged_bridge.controller.runner import Controller
        from converged_bridge.controller.settings import ControllerSettings
        from converged_bridge.kube.core import KubeCore
        from converged_bridge.wire import CONTROLLER_FIELD_MANAGER

        if self.core is None:
            raise PermanentBackendError("the embedded controller needs a session connected to a cluster")

        settings = ControllerSettings(
            poll_interval=poll_interval,
            cluster_refresh=10.0,
            namespace=self.namespace,
            shared_paths=shared_paths,
            # only this run's steps: a deployed controller (or another run's) never drives them too
            label_selector=f"{CONTROLLER_LABEL}={EMBEDDED},{RUN_LABEL}={self.run_id}",
        )
        core = KubeCore(self.core.api_client, field_manager=CONTROLLER_FIELD_MANAGER)
        self.controller = Controller.connect(core, settings)
        self.controller.start()

    def close(self) -> None:
        if self.controller is not None:
            # stop() does not wait for the watch thread (a daemon blocked in its WATCH request); the
            # loop thread ends at once, an apply in flight within a request's time
            self.controller.stop(timeout=1.0)
            self.controller = None

    # --- capacity ---
    def capacity(self) -> CapacityView:
        """The capacity snapshot, read again when older than `capacity_refresh` seconds."""
        now = self._clock()
        if self._capacity is None or due(self._capacity_read_at, now, self._capacity_refresh):
            self._capacity = self._read_capacity()
            self._capacity_read_at = now
        return self._capacity

    def _read_capacity(self) -> CapacityView:
        slurm = map_slurm_clusters(self.steps.list_slurm_clusters(), self.namespace)
        return CapacityView(slurm=slurm, kueue=self._read_queues(), operators=self._read_operators())

    def _connected(self) -> KubeObjects:
        if self._objects is None:
            raise PermanentBackendError("this session reads no capacity (no Kubernetes client)")
        return self._objects

    def _read_queues(self) -> tuple[KueueQueueView, ...]:
        from converged_bridge.kube.kueue_api import KueueApi

        objects = self._connected()
        kueue = KueueApi(objects)
        try:
            local_queues = objects.list_objects(kueue.local_queues(), namespace=self.namespace)
            if not local_queues:
                return ()
            cluster_queues = {
                cq["metadata"]["name"]: cq for cq in objects.list_objects(kueue.cluster_queues())
            }
            flavors = objects.list_objects(kueue.resource_flavors())
        except PermanentBackendError as e:  # Kueue not installed, or no permission to read it
            log.info("no Kueue capacity for the router: %s", e)
            return ()
        views = []
        for lq in local_queues:
            cq = cluster_queues.get(lq.get("spec", {}).get("clusterQueue", ""))
            if cq is not None:
                views.append(map_kueue_queue(lq, cq, flavors))
        return tuple(sorted(views, key=lambda v: v.local_queue))

    def _read_operators(self) -> Any:
        try:
            objects = self._connected()
            served = [k.crd_name for k in OPERATOR_KINDS if objects.discovered(k)]
            return map_operators(served)
        except PermanentBackendError as e:
            log.info("cannot discover the operators, assuming only Job is available: %s", e)
            return map_operators([])

    # --- the site and the preflight ---
    def read_site_defaults(self) -> SiteDefaults:
        """The namespace's `converged-site` ConfigMap; none when absent or not readable."""
        from converged_bridge.kube.core import NotFound
        from converged_bridge.wire import CONFIGMAPS

        try:
            return parse_site_defaults(self._connected().get(CONFIGMAPS, CONFIGMAP, namespace=self.namespace))
        except (NotFound, PermanentBackendError) as e:
            log.debug("no site defaults for namespace %s: %s", self.namespace, e)
            return SiteDefaults()

    def missing_permissions(self, allocations: bool = False) -> list[str]:
        """What of the run's own calls this identity may not make (deployed controller: no status writes);
        with `allocations`, those on StepAllocations too."""
        from converged_bridge.kube.access_review import Permission, missing_permissions
        from converged_bridge.kube.kueue_api import KueueApi
        from converged_bridge.wire import SLURM_CLUSTERS, STEP_ALLOCATIONS, WORKFLOW_STEPS

        objects = self._connected()
        wanted = [
            Permission(verb, WORKFLOW_STEPS, self.namespace)
            for verb in ("create", "list", "deletecollection")
        ]
        if allocations:
            wanted += [
                Permission(verb, STEP_ALLOCATIONS, self.namespace)
                for verb in ("create", "patch", "list", "deletecollection")
            ]
        wanted.append(Permission("list", SLURM_CLUSTERS))
        try:
            kueue = KueueApi(objects)
            wanted += [
                Permission("list", kueue.local_queues(), self.namespace),
                Permission("list", kueue.cluster_queues()),
            ]
        except PermanentBackendError:
            pass  # no Kueue here: the router offers only Slurm
        return [str(p) for p in missing_permissions(objects, wanted)]

    def slurm_user(self) -> str | None:
        """The Slurm user this namespace's steps run as (the first SlurmCluster that maps it)."""
        for obj in self.steps.list_slurm_clusters():
            for m in (obj.get("spec") or {}).get("userMapping") or []:
                if m.get("namespace") == self.namespace and m.get("user"):
                    return str(m["user"])
        return None

    # --- the run's steps ---
    def submit(self, manifest: dict[str, Any]) -> str:
        created = self.steps.create_step(self.namespace, manifest)
        return str(created["metadata"]["name"])

    def read_steps(self) -> dict[str, dict[str, Any]]:
        """Every WorkflowStep of the run by name: one LIST."""
        return {o["metadata"]["name"]: o for o in self.steps.list_run_steps(self.namespace, self.run_id)}

    # --- the run's allocations ---
    def create_allocation(self, manifest: dict[str, Any]) -> str:
        """Create a StepAllocation (one made before under this name, by this run, is taken as it is)."""
        from converged_bridge.kube.core import AlreadyExists

        if self.allocations is None:
            raise PermanentBackendError("this session cannot make StepAllocations")
        try:
            created = self.allocations.create_allocation(self.namespace, manifest)
        except AlreadyExists:
            return str(manifest["metadata"]["name"])
        return str(created["metadata"]["name"])

    def close_allocation(self, name: str, expected_steps: int) -> None:
        """No step of its group will come any more; it was given `expected_steps` in all."""
        if self.allocations is not None:
            self.allocations.close_allocation(self.namespace, name, expected_steps)

    def read_allocations(self) -> dict[str, dict[str, Any]]:
        if self.allocations is None:
            return {}
        return {
            o["metadata"]["name"]: o
            for o in self.allocations.list_run_allocations(self.namespace, self.run_id)
        }

    def wait_allocations_finished(self, names: set[str], timeout: float) -> list[str]:
        """Wait (up to `timeout` s) until the named allocations have finished, reading the run's once per
        half second: an embedded controller must see their jobs end before it stops, or their status
        stays as it last wrote it. The names of those still unfinished."""
        from converged_bridge.kube.runs import FINISHED_PHASES

        deadline = self._clock() + timeout
        while True:
            try:
                found = self.read_allocations()
                left = sorted(
                    n
                    for n in names
                    if n in found and (found[n].get("status") or {}).get("phase") not in FINISHED_PHASES
                )
            except BackendError as e:
                log.warning("checking the run's allocations failed: %s", e)
                left = sorted(names)
            if not left or self._clock() >= deadline:
                return left
            time.sleep(0.5)

    def cancel(self, timeout: float) -> list[str]:
        """Delete the run's unfinished WorkflowSteps and StepAllocations (one call each) and wait (up to
        `timeout` s) until the controller has cancelled their backend jobs and let them go. Finished ones
        stay: they are the run's record (`kubectl get workflowsteps`). Returns the names of unfinished
        ones still present."""
        from converged_bridge.kube.core import NotFound

        doomed = self.steps.delete_unfinished_steps(self.namespace, self.run_id)
        if self.allocations is not None:
            with contextlib.suppress(NotFound):  # no StepAllocation kind on this cluster: the run had none
                doomed += self.allocations.delete_unfinished_allocations(self.namespace, self.run_id)
        deadline = self._clock() + timeout
        remaining: list[str] | None = None
        while True:
            try:
                present = self.read_steps() | (self.read_allocations() if self.allocations else {})
                remaining = sorted(name for name in doomed if name in present)
            except BackendError as e:
                log.warning("checking the cancelled steps failed: %s", e)
            if remaining == [] or self._clock() >= deadline:
                return ["(the run's steps could not be listed)"] if remaining is None else remaining
            time.sleep(0.5)
