"""The I/O shell of one snakemake run: the Kubernetes client, the capacity the router reads, the run's
WorkflowSteps, and (in embedded mode) the controller running in this process.

Everything here is created when snakemake creates the executor, never at import: importing the
plugin needs no cluster and no kubeconfig.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from converged_bridge.capacity_view import map_kueue_queue, map_operators, map_slurm_clusters
from converged_bridge.errors import BackendError, PermanentBackendError
from converged_bridge.routing import CapacityView, KueueQueueView
from converged_bridge.timing import due

if TYPE_CHECKING:
    from converged_bridge.controller.runner import Controller
    from converged_bridge.kube.run_steps import RunSteps

log = logging.getLogger("converged.snakemake")


class RunSession:
    """One run's view of the cluster. Methods raise converged_bridge BackendErrors; the executor
    translates them into WorkflowErrors."""

    def __init__(
        self,
        steps: RunSteps,
        *,
        namespace: str,
        run_id: str,
        capacity_refresh: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.steps = steps
        self.namespace = namespace
        self.run_id = run_id
        self._capacity_refresh = capacity_refresh
        self._clock = clock
        self._capacity: CapacityView | None = None
        self._capacity_read_at: float | None = None  # by `clock`; None: never read
        self._api_client: Any = None
        self.controller: Controller | None = None

    @classmethod
    def connect(
        cls, *, kubeconfig: str | None, namespace: str, run_id: str, capacity_refresh: float
    ) -> RunSession:
        from converged_bridge.kube.access import load_api_client
        from converged_bridge.kube.run_steps import RunSteps

        try:
            api_client = load_api_client(kubeconfig)
        except Exception as e:  # the client's config errors, turned into our own
            where = kubeconfig or "$KUBECONFIG, ~/.kube/config or the in-cluster service account"
            raise PermanentBackendError(f"no Kubernetes credentials from {where}: {e}") from e
        session = cls(
            RunSteps(api_client), namespace=namespace, run_id=run_id, capacity_refresh=capacity_refresh
        )
        session._api_client = api_client
        return session

    # --- embedded controller ---
    def start_controller(self, poll_interval: float, shared_paths: str = "") -> None:
        """Run the WorkflowStep controller in this process, watching this namespace only; its step
        pods mount `shared_paths` (comma-separated host directories) at the same path."""
        from converged_bridge.api.workflowstep import CONTROLLER_LABEL
        from converged_bridge.controller.runner import Controller, ControllerSettings
        from converged_bridge.kube.access import KubeAccess
        from converged_bridge.kube.run_steps import RUN_LABEL

        settings = ControllerSettings(
            poll_interval=poll_interval,
            cluster_refresh=10.0,
            namespace=self.namespace,
            shared_paths=shared_paths,
            # only this run's steps: a deployed controller (or another run's) never drives them too
            label_selector=f"{CONTROLLER_LABEL}=embedded,{RUN_LABEL}={self.run_id}",
        )
        self.controller = Controller(KubeAccess(self._api_client), settings)
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

    def _read_queues(self) -> tuple[KueueQueueView, ...]:
        try:
            local_queues = self.steps.list_local_queues(self.namespace)
            if not local_queues:
                return ()
            cluster_queues = {cq["metadata"]["name"]: cq for cq in self.steps.list_cluster_queues()}
            flavors = self.steps.list_resource_flavors()
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
            return map_operators(self.steps.crd_names())
        except PermanentBackendError as e:
            log.info("cannot list CRDs, assuming only Job is available: %s", e)
            return map_operators([])

    # --- the run's steps ---
    def submit(self, manifest: dict[str, Any]) -> str:
        created = self.steps.create_step(self.namespace, manifest)
        return str(created["metadata"]["name"])

    def read_steps(self) -> dict[str, dict[str, Any]]:
        """Every WorkflowStep of the run by name: one LIST."""
        return {o["metadata"]["name"]: o for o in self.steps.list_run_steps(self.namespace, self.run_id)}

    def cancel(self, timeout: float) -> list[str]:
        """Delete the run's unfinished WorkflowSteps (one call) and wait (up to `timeout` s) until the
        controller has cancelled their backend jobs and let them go. Finished steps stay: they are the
        run's record (`kubectl get workflowsteps`). Returns the names of unfinished steps still present."""
        doomed = self.steps.delete_unfinished_steps(self.namespace, self.run_id)
        deadline = self._clock() + timeout
        remaining: list[str] | None = None
        while True:
            try:
                present = self.read_steps()
                remaining = sorted(name for name in doomed if name in present)
            except BackendError as e:
                log.warning("checking the cancelled steps failed: %s", e)
            if remaining == [] or self._clock() >= deadline:
                return ["(the run's steps could not be listed)"] if remaining is None else remaining
            time.sleep(0.5)
