"""The Slurm backend unit: one job listing per cluster per cycle, the pure plan, exactly-once submission.

Exactly once: a step's job carries the step's UID (its comment); a step is submitted only against a
listing taken after its last submit attempt, and a job found in a listing is adopted, never submitted
again — also after a controller crash, whose successor finds the job in its first listing. A
StepAllocation's job is submitted the same way (its comment carries the allocation's UID); its steps are
handed to its agent (`allocation.keeper`), never submitted alone.

Clusters are listed side by side, so a cluster that answers slowly (slurmrestd waits MessageTimeout for
a slurmctld that is down, 10 s a request) delays no other. A cluster whose listing or submission fails
as unreachable is not asked again for a while (15 s, doubling to 5 min, reset by an answer); meanwhile
its steps show `ClusterUnreachable` with since when and why, keep their phase, and nothing is submitted
there; its allocations and their grouped steps keep their status until it answers. Steps on other
clusters and on Kubernetes go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from converged_bridge.allocation.handover import prepare_spool, prepare_user_dir, write_warm_launcher
from converged_bridge.allocation.keeper import AllocationKeeper, allocation_name
from converged_bridge.allocation.paths import AllocationPaths
from converged_bridge.allocation.plan import StepSummary
from converged_bridge.allocation.steps import AllocationJob
from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.stepallocation import StepAllocation
from converged_bridge.api.workflowstep import Backend, BackendRef, WorkflowStep
from converged_bridge.backends.slurm.allocation import (
    build_allocation_submission,
    build_grouped_step_script,
    build_warm_launcher,
)
from converged_bridge.backends.slurm.files import prepare_dir, write_private_file
from converged_bridge.backends.slurm.intents import CancelSlurmJob, SubmitAllocationJob, SubmitSlurmJob
from converged_bridge.backends.slurm.outcome import map_slurm_job
from converged_bridge.backends.slurm.plan import (
    SlurmView,
    plan_slurm_cleanup,
    plan_slurm_step,
    resolve_user,
)
from converged_bridge.errors import BackendError, InvalidStep, PermanentBackendError, TransientBackendError
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
BACKOFF_FIRST = 15.0  # seconds an unreachable cluster is left alone after its first failure
BACKOFF_MAX = 300.0


@dataclass(frozen=True)
class Outage:
    """A cluster that did not answer: since when (wall clock, for the status), why, and when to ask
    again (monotonic)."""

    since: datetime
    error: str
    retry_at: float
    backoff: float

    def describe(self) -> str:
        return f"since {self.since.strftime('%H:%M:%S')} UTC ({self.error[:300]})"


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
        allocation_spool: str | None = None,
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
        self._refused: dict[str, str] = {}  # allocation uid -> why Slurm refused its job
        self.outages: dict[str, Outage] = {}  # cluster -> its current outage
        self._listers = ThreadPoolExecutor(4, "converged-slurm-list")
        self.queries = 0  # Slurm listings made, for benchmarks and tests
        self._keeper = AllocationKeeper(self, spool_root=allocation_spool)

    # --- observe ---
    def observe(self, steps: Sequence[WorkflowStep], allocations: Sequence[StepAllocation] = ()) -> None:
        """One job listing of each cluster these steps and allocations name (never a query per step),
        side by side, then the allocations' hand-over directories; a cluster in an outage is asked
        again only when its backoff is over."""
        self._refresh_clusters()
        now = self._monotonic()
        names = []
        named = {cluster_of(step) for step in steps} | {cluster_of(a) for a in allocations}
        for name in sorted(n for n in named if n):
            outage = self.outages.get(name)
            if outage is not None and now < outage.retry_at:
                continue
            if self._transport(name) is not None:
                names.append(name)
        listed = (
            list(self._listers.map(self._list, names)) if len(names) > 1 else [self._list(n) for n in names]
        )
        for name, result in zip(names, listed, strict=True):
            if isinstance(result, BackendError):
                log.warning("listing Slurm jobs of %s failed: %s", name, result)
                self._snapshots.pop(name, None)  # never decide on a stale listing
                self._note_outage(name, result)
                continue
            self.queries += 1
            self._snapshots[name] = index_by_step(result)
            self._snapshot_seq[name] = self._snapshot_seq.get(name, 0) + 1
            if self.outages.pop(name, None) is not None:
                log.info("Slurm cluster %s answers again", name)
        self._keeper.observe(allocations)

    def _list(self, name: str) -> list[SlurmJob] | BackendError:
        transport = self._transport(name)
        if transport is None:
            return TransientBackendError(f"SlurmCluster {name} is gone")
        try:
            return transport.list_jobs()
        except BackendError as e:
            return e

    def _note_outage(self, name: str, error: BackendError) -> None:
        if isinstance(error, PermanentBackendError):
            return  # refused (a token, a version): not an outage, said by the listing's log line
        held = self.outages.get(name)
        backoff = BACKOFF_FIRST if held is None else min(BACKOFF_MAX, held.backoff * 2)
        since = self._clock() if held is None else held.since
        self.outages[name] = Outage(since, str(error), self._monotonic() + backoff, backoff)

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
        outage = self.outages.get(name)
        if spec is not None and outage is not None:
            return SlurmView(
                cluster_name=name,
                cluster=spec,
                job=None,
                submitted_job_id=None,
                log_dir=self.log_dir(step),
                timing=timing,
                unreachable=outage.describe(),
            )
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
        if allocation_name(step):
            return self._keeper.decide_step(step, timing)
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
        if allocation_name(step):
            return self._keeper.decide_step_cleanup(step, StatusTiming(now=self._clock()))
        view = self._view(step, StatusTiming(now=self._clock()))
        if view is not None and view.unreachable is not None and step.status.backend_ref is not None:
            return None  # its job may still run: cancel it once the cluster answers, then let go
        return None if view is None else plan_slurm_cleanup(step, view)

    def _may_submit(self, uid: str, cluster: str) -> bool:
        """Exactly once: only against a listing taken after this step's last submit attempt."""
        if uid in self._submitted:
            return False
        seq = self._snapshot_seq.get(cluster)
        return seq is not None and seq > self._attempted.get(uid, -1)

    # --- execute ---
    def execute(self, step: WorkflowStep, intent: BackendIntent) -> Executed:
        handed = self._keeper.execute(intent)
        if handed is not None:
            return handed
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
        unwritable = prepare_dir(intent.log_dir, sub.user)
        if unwritable is not None:
            return Executed(then=tuple(plan_failure(step, "LogDirNotWritable", unwritable, self._clock())))
        try:
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
            self._snapshots.pop(intent.cluster, None)
            self._note_outage(intent.cluster, e)
            return Executed(decide_again=True)  # now in an outage: the step says so
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

    def _submit_allocation(self, alloc: StepAllocation, intent: SubmitAllocationJob) -> Executed:
        transport = self._transport(intent.cluster)
        if transport is None:
            return Executed(stop=True)
        uid = alloc.metadata.uid or ""
        sub = intent.submission
        self._attempted[uid] = self._snapshot_seq.get(intent.cluster, 0)
        unwritable = prepare_dir(intent.paths.logs, sub.user)
        if unwritable is not None:
            self._refused[uid] = unwritable
            return Executed(decide_again=True)
        try:
            prepare_user_dir(intent.paths.state, sub.user)  # the agent, as the user, writes there
            prepare_spool(intent.paths)
            if intent.warm_launcher is not None:
                write_warm_launcher(intent.paths, intent.warm_launcher)
        except TransientBackendError as e:
            log.warning("preparing allocation %s failed, will retry after the next listing: %s", uid, e)
            return Executed(stop=True)
        try:
            job_id = transport.submit(sub)
        except TransientBackendError as e:
            log.warning("submitting allocation %s failed, will retry after the next listing: %s", uid, e)
            self._snapshots.pop(intent.cluster, None)
            self._note_outage(intent.cluster, e)
            return Executed(stop=True)  # decided again once the cluster answers
        except PermanentBackendError as e:
            self._refused[uid] = f"Slurm refused the allocation's job: {e}"
            return Executed(decide_again=True)
        log.info("allocation %s/%s submitted as Slurm job %s/%s", *_where(alloc), intent.cluster, job_id)
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

    # --- allocations (allocation.keeper asks these of its backend) ---
    def decide_allocation(
        self, alloc: StepAllocation, steps: Sequence[StepSummary], timing: StatusTiming
    ) -> list[Intent] | None:
        return self._keeper.decide_allocation(alloc, steps, timing)

    def decide_allocation_cleanup(
        self, alloc: StepAllocation, steps: Sequence[StepSummary], timing: StatusTiming
    ) -> list[Intent] | None:
        return self._keeper.decide_allocation_cleanup(alloc, steps, timing)

    def execute_allocation(self, alloc: StepAllocation, intent: BackendIntent) -> Executed:
        handed = self._keeper.execute(intent)
        if handed is not None:
            return handed
        if isinstance(intent, SubmitAllocationJob):
            return self._submit_allocation(alloc, intent)
        if isinstance(intent, CancelSlurmJob):
            return self._cancel(intent)
        raise TypeError(f"the Slurm backend cannot carry out {type(intent).__name__} for an allocation")

    def observed(self, alloc: StepAllocation) -> bool:
        name = cluster_of(alloc) or ""
        return name not in self.clusters or name in self._snapshots

    def _allocation_job(self, alloc: StepAllocation) -> SlurmJob | None:
        uid = alloc.metadata.uid or ""
        job = self._snapshots.get(cluster_of(alloc) or "", {}).get(uid)
        if job is not None:
            self._submitted.pop(uid, None)
        return job

    def job_of(self, alloc: StepAllocation) -> AllocationJob | None:
        job = self._allocation_job(alloc)
        if job is None:
            return None
        cluster = cluster_of(alloc) or ""
        outcome = map_slurm_job(job, cluster)
        ref = BackendRef.for_slurm_job(cluster, job.job_id)
        return AllocationJob(
            outcome.phase, outcome.reason, outcome.message, ref, job.start_time, job.end_time
        )

    def submitted_of(self, alloc: StepAllocation) -> BackendRef | None:
        job_id = self._submitted.get(alloc.metadata.uid or "")
        return None if job_id is None else BackendRef.for_slurm_job(cluster_of(alloc) or "", job_id)

    def build_submit(
        self, alloc: StepAllocation, paths: AllocationPaths
    ) -> BackendIntent | tuple[str, str] | None:
        uid = alloc.metadata.uid or ""
        name = cluster_of(alloc) or ""
        cluster = self.clusters.get(name)
        if uid in self._refused:
            return ("SubmitFailed", self._refused[uid])
        if cluster is None:
            return ("UnknownSlurmCluster", f"there is no SlurmCluster named {name!r}")
        user = resolve_user(cluster, alloc.metadata.namespace or "")
        if user is None:
            return (
                "NoUserMapping",
                f"SlurmCluster {name!r} maps no Slurm user to namespace {alloc.metadata.namespace!r}",
            )
        try:
            submission = build_allocation_submission(alloc, cluster, paths, user=user)
            warm = build_warm_launcher(alloc, cluster, paths) if alloc.spec.warm else None
        except InvalidStep as e:
            return ("InvalidSpec", f"invalid for Slurm: {e}")
        if not self._may_submit(uid, name):
            return None
        return SubmitAllocationJob(name, submission, paths, warm)

    def build_cancel(self, alloc: StepAllocation) -> BackendIntent | None:
        name = cluster_of(alloc) or ""
        cluster = self.clusters.get(name)
        job = self._allocation_job(alloc)
        job_id = (
            job.job_id
            if job is not None and not job.terminal
            else self._submitted.get(alloc.metadata.uid or "")
        )
        user = resolve_user(cluster, alloc.metadata.namespace or "") if cluster is not None else None
        return CancelSlurmJob(name, job_id, user) if job_id is not None and user is not None else None

    def build_step_script(self, step: WorkflowStep, alloc: StepAllocation) -> str:
        cluster = self.clusters.get(cluster_of(alloc) or "")
        if cluster is None:
            raise InvalidStep("spec.slurm.cluster", f"there is no SlurmCluster named {cluster_of(alloc)!r}")
        return build_grouped_step_script(
            step, cluster, uid=step.metadata.uid or "", log_dir=self.log_dir(step)
        )

    def runs_warm(self, step: WorkflowStep, alloc: StepAllocation) -> bool:
        # a fork runs in the warm step's container, with its GPUs (none): the same image, no GPU
        return step.spec.image == alloc.spec.image and step.spec.resources.gpus == 0

    def target_of(self, alloc: StepAllocation) -> str:
        name = cluster_of(alloc) or ""
        partition = alloc.spec.slurm.partition if alloc.spec.slurm else None
        defaults = self.clusters[name].defaults if name in self.clusters else None
        return f"{name}/{partition or (defaults.partition if defaults else None) or '(default)'}"

    def agent_log(self, alloc: StepAllocation) -> str | None:
        return f"{alloc.spec.working_dir.rstrip('/')}/.converged/logs/converged-{alloc.metadata.uid}.log"

    # --- the rest of a step's life ---
    def log_dir(self, step: WorkflowStep) -> str:
        """Where the step's Slurm log goes: `.converged/logs` in its working directory, else the default."""
        if step.spec.working_dir:
            return f"{step.spec.working_dir.rstrip('/')}/.converged/logs"
        return self._default_log_dir

    def finished(self, step: WorkflowStep) -> None:
        if any(e.value_from is not None for e in step.spec.env):
            for path in Path(self.log_dir(step)).glob(f".secrets*/{step.metadata.uid}.env"):
                path.unlink(missing_ok=True)

    def forget(self, uid: str) -> None:
        self._submitted.pop(uid, None)
        self._attempted.pop(uid, None)

    def close(self) -> None:
        self._listers.shutdown(wait=False, cancel_futures=True)
        for transport, _ in self._transports.values():
            transport.close()
        self._transports.clear()


def cluster_of(obj: WorkflowStep | StepAllocation) -> str | None:
    return obj.spec.slurm.cluster if obj.spec.slurm else None


def _where(alloc: StepAllocation) -> tuple[str, str]:
    return alloc.metadata.namespace or "", alloc.metadata.name or ""
