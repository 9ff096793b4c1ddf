"""What this run learns from past runs and records for the next (the Executor delegates here).

At the start: the history store and snakemake's records are read once (`history`). The plan asks for
every job's estimate (`plan_estimates`); each submitted step gets its history notes, and, when the run
right-sizes requests, its learnt time and memory (`size_step`); a step killed at a learnt request is run
once more at the declared limits (`retry_reason`); when the run ends its steps are appended to the store
(`record_run`) and the next plan's estimates are worked out for the summary (`next_estimates`).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from converged_bridge.history import (
    Declared,
    Estimate,
    RightSize,
    RunSample,
    StepHistoryNotes,
    classify_limit_failure,
    estimate_step,
    parse_history_annotations,
    plan_declared_retry,
    plan_right_size,
    select_samples,
)
from converged_bridge.report.history_samples import build_run_samples
from converged_bridge.report.record import StepRecord
from converged_bridge.report.rules import RuleRow, build_rule_rows
from converged_bridge.routing import SiteWeights
from snakemake_executor_plugin_converged.history import (
    JobHistoryFacts,
    append_history,
    current_user,
    read_benchmarks,
    read_history,
    read_job_history_facts,
)
from snakemake_executor_plugin_converged.resources import StepResources

TYPICAL_WINDOW = 200  # recent samples whose median is the run's typical step runtime
MIN_STARTUPS = 3  # steps of a backend measured before its start-up is learnt


class RunHistory:
    """The history as this run reads and extends it; `declared_only`: jobs retried at declared limits."""

    def __init__(
        self,
        working_dir: str,
        samples: Sequence[RunSample],
        *,
        right_size: bool = False,
        default_runtime_minutes: int = 1,
        skipped: int = 0,
        from_snakemake: int = 0,
    ) -> None:
        self.working_dir = working_dir
        self.samples = list(samples)
        self.right_size = right_size
        self.default_runtime_minutes = default_runtime_minutes
        self.skipped = skipped
        self.from_snakemake = from_snakemake
        self.declared_only: set[int] = set()
        self.run_samples: list[RunSample] = []  # this run's, once recorded
        self._selected: dict[tuple[str, str], list[RunSample]] = {}

    @classmethod
    def read(cls, working_dir: str, user: str, *, right_size: bool) -> RunHistory:
        read = read_history(working_dir, user)
        return cls(
            working_dir,
            read.samples,
            right_size=right_size,
            skipped=read.skipped,
            from_snakemake=read.from_snakemake,
        )

    def runs_of(self, rule: str, code_hash: str) -> list[RunSample]:
        key = (rule, code_hash)
        if key not in self._selected:
            self._selected[key] = select_samples(self.samples, rule, code_hash)
        return self._selected[key]

    def declared(self, resources: StepResources) -> Declared:
        minutes = resources.shape.runtime_minutes
        return Declared(
            runtime_s=60.0 * (minutes or self.default_runtime_minutes),
            mem_mib=float(resources.shape.mem_mib) if resources.shape.mem_mib else None,
            runtime_assumed=minutes is None,
        )

    def estimate(self, facts: JobHistoryFacts, resources: StepResources) -> Estimate:
        return estimate_step(
            self.runs_of(facts.rule, facts.code_hash), self.declared(resources), facts.input_bytes
        )

    def learnt_weights(self, weights: SiteWeights) -> SiteWeights:
        """`weights` with what this workflow's recent steps measured: the start-up per backend (the
        median of its last end-to-start gap: snakemake noticing the upstream step, submission, queue,
        container start; at least `MIN_STARTUPS` steps) and the mean runtime of work queued ahead."""
        recent = [s for s in self.samples[-TYPICAL_WINDOW:] if s.succeeded and s.source == "step"]
        changes: dict[str, float] = {}
        for backend, field in (("slurm", "slurm_startup_seconds"), ("kueue", "kueue_startup_seconds")):
            gaps = [
                s.queue_s + (s.dispatch_s or 0.0)
                for s in recent
                if s.backend == backend and s.queue_s is not None
            ]
            if len(gaps) >= MIN_STARTUPS:
                changes[field] = statistics.median(gaps)
        typical = self.typical_runtime()
        if typical is not None:
            changes["mean_runtime_seconds"] = typical
        return dataclasses.replace(weights, **changes) if changes else weights

    def typical_runtime(self) -> float | None:
        """The median runtime of the recent successful steps: how long a step of this workflow lasts."""
        runtimes = [s.runtime_s for s in self.samples[-TYPICAL_WINDOW:] if s.succeeded and s.source == "step"]
        return statistics.median(runtimes) if runtimes else None

    def plan_estimates(
        self, jobs: Iterable[Any], resources: Mapping[int, StepResources]
    ) -> dict[int, Estimate]:
        """Every single job's estimate, by job id (group jobs and jobs without resources are left out)."""
        out = {}
        for job in jobs:
            jobid = int(job.jobid)
            facts = read_job_history_facts(job, self.working_dir)
            if facts is not None and jobid in resources:
                out[jobid] = self.estimate(facts, resources[jobid])
        return out

    def size_step(
        self, job: Any, jobid: int, resources: StepResources
    ) -> tuple[StepResources, StepHistoryNotes | None]:
        """The step's resources (right-sized when the run asks for it and history allows) and its notes."""
        facts = read_job_history_facts(job, self.working_dir)
        if facts is None:
            return resources, None
        estimate = self.estimate(facts, resources)
        declared = resources.shape
        sizing: RightSize | None = None
        if self.right_size and jobid not in self.declared_only:
            sizing = plan_right_size(
                self.runs_of(facts.rule, facts.code_hash),
                estimate,
                declared.runtime_minutes,
                declared.mem_mib,
            )
            if sizing.learnt:
                shape = declared.model_copy(
                    update={"runtime_minutes": sizing.runtime_minutes, "mem_mib": sizing.mem_mib}
                )
                resources = dataclasses.replace(resources, shape=shape)
        notes = StepHistoryNotes(
            code_hash=facts.code_hash,
            input_bytes=facts.input_bytes,
            estimate=estimate,
            declared_minutes=declared.runtime_minutes,
            declared_mem_mib=declared.mem_mib,
            sizing=sizing,
            benchmark=facts.benchmark,
            declared_retry=jobid in self.declared_only,
        )
        return resources, notes

    def retry_reason(self, jobid: int, obj: Mapping[str, Any] | None) -> str | None:
        """Why the failed step `obj` of job `jobid` runs once more at the declared limits (and marks the
        job so); None when it does not (not killed at a learnt limit, or already retried)."""
        if obj is None:
            return None
        notes = parse_history_annotations((obj.get("metadata") or {}).get("annotations") or {})
        sizing = notes.sizing if notes is not None else None
        if sizing is None:
            return None
        status = obj.get("status") or {}
        reason = status.get("reason")
        exit_code = status.get("exitCode")
        kind = classify_limit_failure(
            reason if isinstance(reason, str) else None,
            exit_code if isinstance(exit_code, int) else None,
            sizing.mem_learnt,
        )
        if not plan_declared_retry(
            kind, sizing.runtime_learnt, sizing.mem_learnt, jobid in self.declared_only
        ):
            return None
        self.declared_only.add(jobid)
        learnt = f"{sizing.runtime_minutes} min" if kind == "time" else f"{sizing.mem_mib} MiB"
        return f"it exceeded its learnt {kind} request ({learnt}, reason {reason or exit_code})"

    def finish(self, records: Sequence[StepRecord], run_id: str, logger: Any) -> list[RuleRow]:
        """When the run ends: its steps appended to the store (a failure is logged, the run is not
        failed for it); the per-rule rows of the summary, with the next plan's estimates."""
        try:
            count, path = self.record_run(records, run_id, current_user())
            logger.info(f"converged: {count} steps added to the history {path}")
        except OSError as e:
            logger.warning(f"converged: writing the run's history failed (the next plan cannot learn): {e}")
        return build_rule_rows(records, self.run_samples, self.next_estimates(records))

    def record_run(self, records: Sequence[StepRecord], run_id: str, user: str) -> tuple[int, str]:
        """Append the run's finished steps to the store; returns how many and the store's path.
        Raises OSError."""
        benchmarks = read_benchmarks(
            self.working_dir, [r.history.benchmark for r in records if r.history and r.history.benchmark]
        )
        samples = build_run_samples(records, benchmarks, run_id)
        self.run_samples = samples
        path = append_history(self.working_dir, user, samples)
        self.samples += samples
        self._selected.clear()
        return len(samples), path

    def next_estimates(self, records: Sequence[StepRecord]) -> dict[str, Estimate]:
        """Per rule of the run: what the next plan will estimate for a step of it (at the median input
        size of this run's steps), with the history as it is now."""
        out = {}
        by_rule: dict[tuple[str, str], list[StepRecord]] = {}
        for r in records:
            if r.history is not None:
                by_rule.setdefault((r.rule, r.history.code_hash), []).append(r)
        for (rule, code), members in by_rule.items():
            notes = members[0].history
            assert notes is not None
            sizes = [
                m.history.input_bytes for m in members if m.history and m.history.input_bytes is not None
            ]
            minutes = notes.declared_minutes
            declared = Declared(
                runtime_s=60.0 * (minutes or self.default_runtime_minutes),
                mem_mib=float(notes.declared_mem_mib) if notes.declared_mem_mib else None,
                runtime_assumed=minutes is None,
            )
            size = int(statistics.median(sizes)) if sizes else None
            out[rule] = estimate_step(self.runs_of(rule, code), declared, size)
        return out
