"""Snakemake executor plugin: `snakemake --executor converged`.

Each snakemake job becomes one WorkflowStep (converged.dev/v1alpha1) that runs on Slurm or through
Kueue, as the router decides. This module holds a thin Executor (its settings are in `settings`); the
work is done by `resources` (per-rule resources), `naming`, `manifest`, `plan`, `status`, `groups`
(pure) and `session` (I/O).

Importing this module loads no kubeconfig and contacts no cluster: that happens when snakemake
creates the executor for a run that uses it.
"""

# No `from __future__ import annotations` here: snakemake reads the settings fields' types at runtime.

import dataclasses
import os
import sys
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import CommonSettings, SharedFSUsage

from converged_bridge.errors import BackendError
from converged_bridge.history import build_history_annotations
from converged_bridge.routing import Preference, SiteWeights, StepRequest, route_batch
from converged_bridge.schedule import build_machine
from converged_bridge.wire import CONTROLLER_LABEL, EMBEDDED, GROUP_LABEL
from snakemake_executor_plugin_converged.command import build_job_args
from snakemake_executor_plugin_converged.groups import (
    AllocationBook,
    AllocationPlan,
    build_allocation_manifest,
    plan_run_allocations,
)
from snakemake_executor_plugin_converged.history import current_user
from snakemake_executor_plugin_converged.jobinfo import (
    dag_levels,
    identify_job,
    job_resources,
    job_rule_images,
    job_threads,
    upstream_jobids,
)
from snakemake_executor_plugin_converged.learning import RunHistory
from snakemake_executor_plugin_converged.localfacts import read_path_facts, read_user_facts
from snakemake_executor_plugin_converged.manifest import JobFacts, build_step_manifest
from snakemake_executor_plugin_converged.naming import build_run_id
from snakemake_executor_plugin_converged.placements import Placements
from snakemake_executor_plugin_converged.plan import PlanEntry, render_plan
from snakemake_executor_plugin_converged.preflight import RunFacts, UserFacts, check_run
from snakemake_executor_plugin_converged.resources import ResourceParser, StepResources
from snakemake_executor_plugin_converged.schedule import PlanSchedule, plan_schedule
from snakemake_executor_plugin_converged.settings import ExecutorSettings

__all__ = ["Executor", "ExecutorSettings", "common_settings"]  # what snakemake reads of a plugin
from snakemake_executor_plugin_converged.site import merge_site_defaults
from snakemake_executor_plugin_converged.sources import share_runtime_source_cache
from snakemake_executor_plugin_converged.status import State, map_step_outcome
from snakemake_executor_plugin_converged.upfront import is_pending, read_upfront_resources

# One storage model for both backends: a shared filesystem, mounted at the same path on the Slurm
# nodes and (hostPath or a PVC) in the Kubernetes pods. Jobs run in the workflow directory, sources
# and software come from it. A default storage provider (--default-storage-provider) also works for
# inputs and outputs; its plugin must then be installed where the steps run (see docs/further.md).
common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=False,
    job_deploy_sources=False,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=False,  # --envvars go into the WorkflowStep's env instead
    auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=1,
    pass_group_args=True,
)


class Executor(RemoteExecutor):
    """Snakemake jobs -> WorkflowSteps; status by one LIST per cycle; cancel deletes the run's steps."""

    def __post_init__(self) -> None:
        settings = self.workflow.executor_settings or ExecutorSettings()
        problems = settings.problems()
        if problems:
            raise WorkflowError("converged executor settings: " + "; ".join(problems))
        self.settings: ExecutorSettings = settings
        self.weights = SiteWeights(slurm=settings.slurm_weight, kueue=settings.kueue_weight)
        self.working_dir = os.path.abspath(os.getcwd())
        storage = self.workflow.storage_settings
        if SharedFSUsage.SOURCE_CACHE in storage.shared_fs_usage:
            # Steps run as the namespace's Slurm user or in a container: snakemake's runtime source
            # cache (a 0700 temporary directory in the submitter's own cache) is never reachable from
            # there, so steps read the sources from the shared workflow directory instead.
            storage.shared_fs_usage = frozenset(storage.shared_fs_usage - {SharedFSUsage.SOURCE_CACHE})
        share_runtime_source_cache(self.workflow, self.working_dir)  # the copies steps wait for
        self._python: str | None = None
        self._cancelling = False
        from converged_bridge.kube.core import current_namespace
        from snakemake_executor_plugin_converged.session import RunSession

        self.namespace = settings.namespace or current_namespace(settings.kubeconfig)
        self.run_id = build_run_id(settings.run_id or uuid.uuid4().hex[:8])
        try:
            self.session = RunSession.connect(
                kubeconfig=settings.kubeconfig,
                namespace=self.namespace,
                run_id=self.run_id,
                capacity_refresh=settings.capacity_refresh,
            )
            # the site's defaults for this namespace fill what the user left unset (no flags needed)
            self.site = self.session.read_site_defaults()
            settings = merge_site_defaults(settings, self.site, unset=vars(ExecutorSettings()))
            self.settings = settings
            self.parse_resources = ResourceParser(
                default_backend=Preference(settings.default_backend),
                default_image=settings.image,
                default_slurm_image=settings.slurm_image,
                default_local_queue=settings.local_queue,
            )
            # --- history: past runs' figures for the plan, the router's waits and right-sized requests ---
            self.history = RunHistory.read(self.working_dir, current_user(), right_size=settings.right_size)
            # start-up per backend and the runtime of work queued ahead: the router's waits and the plan
            self.weights = self.history.learnt_weights(self.weights)
            # --- end history ---
            # a placed step counts against the capacity snapshot until its controller submitted it and
            # the daemon mirrored it: a poll of ours and one mirror cycle (10 s by default) with margin
            self.placements = Placements(self.weights, settle_seconds=settings.poll_interval + 15.0)
            # parses every job's resources and routes it: a bad value fails before any submission
            entries, local_jobs = self._plan_entries()
            self.plan = self._plan_schedule(entries)
            self.allocations = AllocationBook(self._plan_allocations(entries))
            problems = [] if settings.plan else self._preflight(entries)
        except BackendError as e:
            raise WorkflowError(f"converged: cannot read the cluster: {e}") from e
        if settings.plan:
            text = render_plan(
                entries,
                self.plan,
                run_id=self.run_id,
                namespace=self.namespace,
                local_jobs=local_jobs,
                allocations=self.allocations.plans,
            )
            print(text, end="", flush=True)
            raise SystemExit(0)
        if problems:
            raise WorkflowError(
                "converged: the run cannot start (nothing was submitted):\n  - " + "\n  - ".join(problems)
            )
        # the Slurm jobs' log directory, made as the user running snakemake (a deployed controller
        # runs as another identity and may not write here)
        os.makedirs(os.path.join(self.working_dir, ".converged", "logs"), exist_ok=True)
        self.embedded = settings.controller == "embedded"
        if self.embedded:
            self.session.start_controller(settings.poll_interval, settings.shared_paths or "")
        self.next_seconds_between_status_checks = settings.poll_interval
        self.logger.info(f"converged: run {self.run_id} in namespace {self.namespace}")

    def _preflight(self, entries: list[PlanEntry]) -> list[str]:
        """Every problem that would only show once steps ran: permissions, unroutable steps, a workflow
        directory off the shared filesystem or not writable for the namespace's Slurm user."""
        grouped = bool(self.allocations.plans)
        slurm_user = self.session.slurm_user()
        facts = RunFacts(
            namespace=self.namespace,
            working_dir=self.working_dir,
            entries=entries,
            missing_permissions=self.session.missing_permissions(allocations=grouped),
            slurm_user=slurm_user,
            slurm_user_facts=read_user_facts(slurm_user) if slurm_user else None,
            shared_dirs=self.site.shared_dirs,
            dirs=[
                read_path_facts(self.working_dir),
                read_path_facts(os.path.join(self.working_dir, ".snakemake")),
            ],
            spool_writer=self._spool_writer() if grouped else None,
        )
        return check_run(facts)

    def _spool_writer(self) -> UserFacts | None:
        """The identity that writes the allocations' spool: the site's deployed controller (its uid from
        the site's ConfigMap); None when the controller runs in this process or the site does not say."""
        uid = self.site.controller_uid
        if self.settings.controller == "embedded" or uid is None:
            return None
        return UserFacts(name=f"uid {uid}", uid=uid, gids=frozenset({uid}))

    # --- per job ---
    def _resources(self, job: Any, rule: str) -> StepResources:
        """The job's resources as snakemake evaluates them now, just before it runs (all known)."""
        return self.parse_resources(rule, job_resources(job), threads=job_threads(job))

    def _request(self, job: Any, rule: str, resources: StepResources) -> StepRequest:
        """The router's input for `job`: its resources and the rule's own images."""
        request = resources.request(rule, self.namespace, self.settings.slurm_cluster)
        images = tuple(url for url, _ in job_rule_images(job, self.working_dir))
        return dataclasses.replace(request, rule_images=images) if images else request

    def _planned_resources(self, job: Any, rule: str) -> StepResources:
        """The job's resources as far as the plan may know them, calling none of the workflow's functions."""
        found = read_upfront_resources(job)
        threads = found.get("_cores")
        return self.parse_resources.planned(
            rule, found, threads=threads if isinstance(threads, int) and not is_pending(threads) else None
        )

    def _plan_entries(self) -> tuple[list[PlanEntry], int]:
        """Every job of the DAG routed, level by level: each level as one burst on the snapshot (its
        steps charged as they are placed), as if the levels before it had finished."""
        entries = []
        levels, local_jobs = dag_levels(self.workflow.dag)
        capacity = self.session.capacity()
        for level, jobs in enumerate(levels):
            parsed = []
            for job in jobs:
                ident = identify_job(job)
                resources = self._planned_resources(job, ident.rule)
                parsed.append((ident, resources, self._request(job, ident.rule, resources)))
            decisions = route_batch([request for _, _, request in parsed], capacity, self.weights)
            for (ident, resources, _), decision in zip(parsed, decisions, strict=True):
                wildcards = ",".join(f"{k}={v}" for k, v in ident.wildcards.items())
                entries.append(PlanEntry(level, ident.jobid, ident.rule, wildcards, resources, decision))
        return entries, local_jobs

    def _plan_schedule(self, entries: list[PlanEntry]) -> PlanSchedule:
        """The plan simulated on the capacity snapshot; snakemake's --jobs caps the steps at once."""
        dag = self.workflow.dag
        upstream = {
            int(job.jobid): upstream_jobids(dag, job) for job in dag.needrun_jobs() if not job.is_local
        }
        jobs = getattr(self.workflow, "nodes", None)
        cap = jobs if isinstance(jobs, int) and 0 < jobs < sys.maxsize else None
        estimates = self.history.plan_estimates(
            (j for j in dag.needrun_jobs() if not j.is_local), {e.jobid: e.resources for e in entries}
        )
        return plan_schedule(
            entries, upstream, self.session.capacity(), self.weights, max_running=cap, estimates=estimates
        )

    def _plan_allocations(self, entries: list[PlanEntry]) -> tuple[AllocationPlan, ...]:
        """The plan's groups that run in one allocation each (none unless the run or a rule opts in)."""
        run_default = self.settings.group_allocations
        if not run_default and not any(e.resources.group for e in entries):
            return ()
        capacity = self.session.capacity()
        limits = {
            f"{c.name}/{p.name}": p.max_time_minutes
            for c in capacity.slurm
            for p in c.partitions or ()
            if p.max_time_minutes
        }
        return plan_run_allocations(
            entries,
            self.plan,
            build_machine(capacity),
            run_id=self.run_id,
            opted=lambda r: r.group if r.group is not None else run_default,
            idle_seconds=self.settings.group_idle,
            max_running=self.plan.max_running,
            excluded=frozenset(
                int(j.jobid) for j in self.workflow.dag.needrun_jobs() if getattr(j, "group", None)
            ),
            time_limits=limits,
        )

    def _allocation(self, job: Any, jobid: int) -> AllocationPlan | None:
        """The open allocation this job's step runs in, created on its group's first step; None: alone."""
        plan = None if job.is_group() else self.allocations.allocation_for(jobid)
        if plan is None or plan.name in self.allocations.created:
            return plan
        labels = {CONTROLLER_LABEL: EMBEDDED} if self.embedded else {}
        manifest = build_allocation_manifest(
            plan,
            namespace=self.namespace,
            run_id=self.run_id,
            working_dir=self.working_dir,
            idle_seconds=self.settings.group_idle,
            labels=labels,
            warm=not self.settings.group_cold,
        )
        try:
            self.session.create_allocation(manifest)
        except BackendError as e:
            self.logger.warning(
                f"converged: creating StepAllocation {plan.name} failed, its steps run alone: {e}"
            )
            self.allocations.closed.add(plan.name)
            return None
        self.allocations.created.add(plan.name)
        self.logger.info(
            f"converged: StepAllocation {self.namespace}/{plan.name} for group {plan.group}: "
            f"{plan.decision.target}, {plan.slots} slots, {len(plan.job_ids)} steps"
        )
        return plan

    def _gave(self, plan: AllocationPlan, jobid: int) -> None:
        count = self.allocations.give(plan, jobid)
        if count is not None:
            self._close_allocation(plan.name, count)

    def _close_allocation(self, name: str, count: int) -> None:
        try:
            self.session.close_allocation(name, count)
        except BackendError as e:
            self.logger.warning(f"converged: closing StepAllocation {name} failed (it ends when idle): {e}")

    def get_python_executable(self) -> str:
        return self._python or super().get_python_executable()

    def get_job_args(self, job: JobExecutorInterface) -> str:
        return " ".join([super().get_job_args(job), *build_job_args(job.is_group())])

    def run_job(self, job: JobExecutorInterface) -> None:
        ident = identify_job(job)
        resources = self._resources(job, ident.rule)
        resources, history_notes = self.history.size_step(job, ident.jobid, resources)  # history
        request = self._request(job, ident.rule, resources)
        allocation = self._allocation(job, ident.jobid)
        if allocation is not None:
            decision = allocation.decision  # where the plan put its group
        else:
            try:
                capacity = self.session.capacity()
            except BackendError as e:
                raise WorkflowError(f"converged: cannot read capacity for rule {ident.rule}: {e}") from e
            decision = self.placements.route(request, capacity)
        # In an image the step's python is the image's; on a bare host, this one when software is shared.
        shared = SharedFSUsage.SOFTWARE_DEPLOYMENT in self.workflow.storage_settings.shared_fs_usage
        image = resources.image_for(decision.backend) if decision.backend else None
        self._python = "python3" if image else (sys.executable if shared else "python3")
        try:
            command = self.format_job_exec(job)
        finally:
            self._python = None
        facts = JobFacts(
            namespace=self.namespace,
            run_id=self.run_id,
            rule=ident.rule,
            jobid=ident.jobid,
            attempt=int(job.attempt),
            command=command,
            working_dir=self.working_dir,
            wildcards=ident.wildcards,
            # steps may run without a usable $HOME (Slurm --export=NONE, containers): keep snakemake's
            # cache in the workflow directory unless the user passes XDG_CACHE_HOME with --envvars
            env={"XDG_CACHE_HOME": f"{self.working_dir}/.snakemake/converged-cache", **self.envvars()},
            annotations={
                **self.plan.annotations(ident.members, upstream_jobids(self.workflow.dag, job)),
                **(build_history_annotations(history_notes) if history_notes else {}),
            },
            keep_finished_seconds=self.settings.keep_finished,
            rule_images=job_rule_images(job, self.working_dir),
            declared_retry=history_notes is not None and history_notes.declared_retry,
        )
        manifest = build_step_manifest(facts, resources, decision)
        if self.embedded:  # our own controller drives this run's steps; a deployed one leaves them alone
            manifest["metadata"]["labels"][CONTROLLER_LABEL] = EMBEDDED
        if allocation is not None:
            manifest["metadata"]["labels"][GROUP_LABEL] = allocation.name
        try:
            name = self.session.submit(manifest)
        except BackendError as e:
            raise WorkflowError(
                f"converged: creating the WorkflowStep of rule {ident.rule} failed: {e}"
            ) from e
        if allocation is not None:
            self._gave(allocation, ident.jobid)
        else:
            self.placements.placed(name, request, decision)
        backend = decision.backend.value if decision.backend else "-"
        where = f" in StepAllocation {allocation.name}" if allocation is not None else ""
        self.logger.info(
            f"converged: job {ident.jobid} ({ident.rule}) -> WorkflowStep {self.namespace}/{name}: "
            f"{backend} {decision.target}{where} [{decision.decision.value}] {decision.reason}"
        )
        self.report_job_submission(
            SubmittedJobInfo(job, external_jobid=name, aux={"target": decision.target})
        )

    async def check_active_jobs(
        self, active_jobs: list[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        if not active_jobs:
            return
        if self._cancelling:  # the steps are being deleted on purpose: not failures to report
            for job_info in active_jobs:
                yield job_info
            return
        async with self.status_rate_limiter:
            try:
                steps = self.session.read_steps()  # one LIST for every active step of the run
            except BackendError as e:
                self.logger.warning(f"converged: reading the run's WorkflowSteps failed, retrying: {e}")
                for job_info in active_jobs:
                    yield job_info
                return
        for job_info in active_jobs:
            name = str(job_info.external_jobid)
            outcome = map_step_outcome(name, steps.get(name))
            if outcome.state == State.SUCCEEDED:
                self.placements.finished(name)
                self.logger.info(f"converged: {outcome.message}")
                self.report_job_success(job_info)
            elif outcome.state == State.FAILED:
                self.placements.finished(name)
                if not self._retried_at_declared(job_info, steps.get(name)):
                    self.report_job_error(job_info, msg=outcome.message)
            else:
                yield job_info

    def _retried_at_declared(self, job_info: SubmittedJobInfo, obj: Any) -> bool:
        """A step killed at a learnt (right-sized) request is submitted once more at the declared limits,
        under a new WorkflowStep name; True when it was (its failure is then not snakemake's)."""
        if not self.history.right_size:
            return False
        why = self.history.retry_reason(identify_job(job_info.job).jobid, obj)
        if why is None:
            return False
        self.logger.warning(
            f"converged: WorkflowStep {job_info.external_jobid}: {why}; running it once more with the "
            "declared limits"
        )
        try:
            self.run_job(job_info.job)
        except WorkflowError as e:
            self.logger.error(f"converged: the retry at the declared limits could not be submitted: {e}")
            return False
        return True

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        self._cancelling = True
        try:
            remaining = self.session.cancel(self.settings.cancel_timeout)
        except BackendError as e:
            self.logger.error(f"converged: deleting the run's WorkflowSteps failed: {e}")
            return
        if remaining:
            self.logger.error(f"converged: still present after cancel: {', '.join(remaining)}")
        else:
            self.logger.info(
                f"converged: cancelled run {self.run_id}: its WorkflowSteps and backend jobs are gone"
            )

    def shutdown(self) -> None:
        super().shutdown()
        for name, count in self.allocations.close_all():  # the run ended: nothing more will come
            self._close_allocation(name, count)
        if self.embedded and self.allocations.created:  # our controller records how they end
            left = self.session.wait_allocations_finished(
                self.allocations.created, self.settings.cancel_timeout
            )
            if left:
                self.logger.warning(
                    f"converged: StepAllocations {', '.join(left)} have not ended yet; they end by "
                    "themselves (closed, or idle for --converged-group-idle), their status stays as last "
                    "written"
                )
        self._summarize()
        self.session.close()

    def _summarize(self) -> None:
        """The run's figures, estimate beside measure, from one LIST of its steps."""
        from converged_bridge.report.record import map_run_records
        from converged_bridge.report.summary import build_run_summary, render_run_summary

        try:
            records, _ = map_run_records(self.session.read_steps().values())
        except BackendError as e:
            self.logger.warning(f"converged: reading the run's WorkflowSteps for its summary failed: {e}")
            return
        if records:
            summary = render_run_summary(
                build_run_summary(records),
                self.run_id,
                rules=self.history.finish(records, self.run_id, self.logger),
            )
            report = f"kubectl converged report {self.run_id} -n {self.namespace} > run.html"
            self.logger.info(f"{summary}the run's report: {report}")
