"""The Slurm backend unit: one job listing per cluster per cycle, the pure plan, exactly-once submission.

Exactly once: a step's job carries the step's UID (its comment); a step is submitted only against a
listing taken after its last submit attempt, and a job found in a listing is adopted, never submitted
again — also after a controller crash, whose successor finds the job in its first listing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import Backend, WorkflowStep
from converged_bridge.backends.slurm.files import prepare_dir, write_private_file
from converged_bridge.backends.slurm.intents import CancelSlurmJob, SubmitSlurmJob
from converged_bridge.backends.slurm.plan import SlurmView, plan_slurm_cleanup, plan_slurm_step
from converged_bridge.errors import BackendError, PermanentBackendError, TransientBackendError
from converged_bridge.logfiles import read_log_tail
from converged_bridge.reconcile.intents import DONE, BackendIntent, Executed, Intent
from converged_bridge.reconcile.status import StatusTiming, plan_failure
from converged_bridge.slurm.batch_script import build_secret_env_file
from converged_bridge.slurm.connect import build_transport
from converged_bridge.slurm.jobs import SlurmJob, index_by_step
from converged_bridge.slurm.tokens import SecretReader
from converged_bridge.slurm.transport import SlurmTransport
from converged_bridge.timing import Monotonic, WallClock, due, monotonic, utc_now

log = logging.getLogger("converged.controller.slurm")

TransportFactory = Callable[[str, SlurmClusterSpec, SecretReader], SlurmTransport]
ClusterReader = Callable[[], dict[str, SlurmClusterSpec]]  # SlurmCluster name -> spec, as stored now


class SlurmBackend:
    backend = Backend.SLURM

    def __init__(
        self,
        read_clusters: ClusterReader,
        read_secret: SecretReader,
        *,
        log_dir: str = "/tmp/converged",
        cluster_refresh: float = 30.0,
        transport_factory: TransportFactory = build_transport,
        clock: WallClock = utc_now,
        monotonic_clock: Monotonic = monotonic,
    ) -> None:
        self._read_clusters = read_clusters
        self._read_secret = read_secret
        self._default_log_dir = log_dir
        self._cluster_refresh = cluster_refresh
        self._transport_factory = transport_factory
        self._clock = clock
        self._monotonic = monotonic_clock
        self.clusters: dict[str, SlurmClusterSpec] = {}
        self._clusters_read_at: float | None = None  # monotonic; None: never read
        self._transports: dict[str, tuple[SlurmTransport, SlurmClusterSpec]] = {}
        self._snapshots: dict[str, dict[str, SlurmJob]] = {}  # cluster -> step uid -> job
        self._snapshot_seq: dict[str, int] = {}  # cluster -> count of successful listings
        self._submitted: dict[str, int] = {}  # uid -> job id, until the listing shows the job
        self._attempted: dict[str, int] = {}  # uid -> snapshot seq at the last submit attempt
        self.queries = 0  # Slurm listings made, for benchmarks and tests

    # --- observe ---
    def observe(self, steps: Sequence[WorkflowStep]) -> None:
        """One job listing of each cluster these steps name (never a query per step)."""
        self._refresh_clusters()
        for name in sorted({n for step in steps if (n := cluster_of(step))}):
            transport = self._transport(name)
            if transport is None:
                continue
            try:
                jobs = transport.list_jobs()
            except BackendError as e:
                log.warning("listing Slurm jobs of %s failed: %s", name, e)
                self._snapshots.pop(name, None)  # never decide on a stale listing
                continue
            self.queries += 1
            self._snapshots[name] = index_by_step(jobs)
            self._snapshot_seq[name] = self._snapshot_seq.get(name, 0) + 1

    def _refresh_clusters(self, force: bool = False) -> None:
        now = self._monotonic()
        if not force and not due(self._clusters_read_at, now, self._cluster_refresh):
            return
        self._clusters_read_at = now
        self.clusters = self._read_clusters()

    def _transport(self, name: str) -> SlurmTransport | None:
        spec = self.clusters.get(name)
        if spec is None:
            return None
        held = self._transports.get(name)
        if held is not None and held[1] == spec:
            return held[0]
        if held is not None:
            held[0].close()
        transport = self._transport_factory(name, spec, self._read_secret)
        self._transports[name] = (transport, spec)
        return transport

    # --- decide ---
    def _view(self, step: WorkflowStep, timing: StatusTiming) -> SlurmView | None:
        name = cluster_of(step) or ""
        if name not in self.clusters:
            # a step naming a cluster we have not read: read again now, but at most once a second
            self._refresh_clusters(force=due(self._clusters_read_at, self._monotonic(), 1.0))
        spec = self.clusters.get(name)
        snapshot = self._snapshots.get(name)
        if spec is not None and snapshot is None:
            return None  # no fresh listing of this cluster yet: decide after the next one
        uid = step.metadata.uid or ""
        job = (snapshot or {}).get(uid)
        if job is not None:
            self._submitted.pop(uid, None)
        failed_log = job is not None and job.terminal and job.exit_code != 0 and bool(job.stdout)
        return SlurmView(
            cluster_name=name,
            cluster=spec,
            job=job,
            submitted_job_id=self._submitted.get(uid),
            log_dir=self.log_dir(step),
            timing=timing,
            log_tail=read_log_tail(job.stdout) if job is not None and failed_log else None,
        )

    def decide(self, step: WorkflowStep, timing: StatusTiming) -> list[Intent] | None:
        view = self._view(step, timing)
        if view is None:
            return None
        intents = plan_slurm_step(step, view)
        if any(isinstance(i, SubmitSlurmJob) for i in intents) and not self._may_submit(
            step.metadata.uid or "", view.cluster_name
        ):
            intents = [i for i in intents if not isinstance(i, SubmitSlurmJob)]
        return intents

    def decide_cleanup(self, step: WorkflowStep) -> list[Intent] | None:
        view = self._view(step, StatusTiming(now=self._clock()))
        return None if view is None else plan_slurm_cleanup(step, view)

    def _may_submit(self, uid: str, cluster: str) -> bool:
        """Exactly once: only against a listing taken after this step's last submit attempt."""
        if uid in self._submitted:
            return False
        seq = self._snapshot_seq.get(cluster)
        return seq is not None and seq > self._attempted.get(uid, -1)

    # --- execute ---
    def execute(self, step: WorkflowStep, intent: BackendIntent) -> Executed:
        if isinstance(intent, SubmitSlurmJob):
            return self._submit(step, intent)
        if isinstance(intent, CancelSlurmJob):
            return self._cancel(intent)
        raise TypeError(f"the Slurm backend cannot carry out {type(intent).__name__}")

    def _submit(self, step: WorkflowStep, intent: SubmitSlurmJob) -> Executed:
        transport = self._transport(intent.cluster)
        if transport is None:
            return Executed(stop=True)
        uid = step.metadata.uid or ""
        sub = intent.submission
        self._attempted[uid] = self._snapshot_seq.get(intent.cluster, 0)
        try:
            prepare_dir(intent.log_dir, sub.user)
            if intent.secret_env_file:
                values = {
                    e.name: self._read_secret(
                        step.metadata.namespace or "",
                        e.value_from.secret_key_ref.name,
                        e.value_from.secret_key_ref.key,
                    )
                    for e in step.spec.env
                    if e.value_from is not None
                }
                write_private_file(intent.secret_env_file, build_secret_env_file(values), sub.user)
            job_id = transport.submit(sub)
        except TransientBackendError as e:
            log.warning("submitting step %s failed, will retry after the next listing: %s", uid, e)
            return Executed(stop=True)
        except PermanentBackendError as e:
            message = f"Slurm refused the job: {e}"
            return Executed(then=tuple(plan_failure(step, "SubmitFailed", message, self._clock())))
        log.info(
            "step %s/%s submitted as Slurm job %s/%s",
            step.metadata.namespace,
            step.metadata.name,
            intent.cluster,
            job_id,
        )
        self._submitted[uid] = job_id
        return Executed(decide_again=True)

    def _cancel(self, intent: CancelSlurmJob) -> Executed:
        transport = self._transport(intent.cluster)
        if transport is None:
            return DONE
        try:
            transport.cancel(intent.job_id, intent.user)
        except TransientBackendError as e:
            log.warning("cancelling Slurm job %s/%s failed, will retry: %s", intent.cluster, intent.job_id, e)
            return Executed(stop=True)  # keep the finalizer until the cancel goes through
        except PermanentBackendError as e:
            log.warning("cancelling Slurm job %s/%s refused: %s", intent.cluster, intent.job_id, e)
        return DONE

    # --- the rest of a step's life ---
    def log_dir(self, step: WorkflowStep) -> str:
        """Where the step's Slurm log goes: `.converged/logs` in its working directory, else the default."""
        if step.spec.working_dir:
            return f"{step.spec.working_dir.rstrip('/')}/.converged/logs"
        return self._default_log_dir

    def finished(self, step: WorkflowStep) -> None:
        if any(e.value_from is not None for e in step.spec.env):
            path = Path(self.log_dir(step)) / ".secrets" / f"{step.metadata.uid}.env"
            path.unlink(missing_ok=True)

    def forget(self, uid: str) -> None:
        self._submitted.pop(uid, None)
        self._attempted.pop(uid, None)

    def close(self) -> None:
        for transport, _ in self._transports.values():
            transport.close()
        self._transports.clear()


def cluster_of(step: WorkflowStep) -> str | None:
    return step.spec.slurm.cluster if step.spec.slurm else None
