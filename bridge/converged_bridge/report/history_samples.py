"""A run's finished steps as history samples (pure): what the plugin appends to the history store when
the run ends. Steps that succeeded, and steps killed at a limit (kept as such: they say the limit was too
small, and are not used as estimates); steps that carry no history notes (group jobs, steps of older
plugins) or never ran are left out."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from datetime import datetime

from converged_bridge.history import BenchmarkFigures, RunSample, classify_limit_failure
from converged_bridge.report.record import StepRecord, offset, running_seconds


def build_run_samples(
    records: Sequence[StepRecord], benchmarks: Mapping[str, BenchmarkFigures], run_id: str
) -> list[RunSample]:
    samples = []
    ends = sorted(r.ended for r in records if r.ended is not None)
    for r in records:
        notes = r.history
        seconds = running_seconds(r)
        if notes is None or seconds is None or r.ended is None:
            continue
        sized = notes.sizing
        limit = (
            classify_limit_failure(r.reason, r.exit_code, sized.mem_learnt if sized else False)
            if r.phase == "Failed"
            else None
        )
        if r.phase != "Succeeded" and limit is None:
            continue
        bench = benchmarks.get(notes.benchmark) if notes.benchmark else None
        queue = offset(r.created, r.started)
        dispatch = dispatch_gap(ends, r.created)
        samples.append(
            RunSample(
                rule=r.rule,
                code_hash=notes.code_hash,
                runtime_s=round(seconds, 3),
                ended=r.ended.timestamp(),
                succeeded=r.phase == "Succeeded",
                input_bytes=notes.input_bytes,
                queue_s=round(max(0.0, queue), 3) if queue is not None else None,
                dispatch_s=round(max(0.0, dispatch), 3) if dispatch is not None else None,
                backend=r.backend,
                cpu_s=bench.cpu_s if bench else None,
                max_rss_mib=bench.max_rss_mib if bench else None,
                requested_minutes=r.shape.runtime_minutes,
                requested_mem_mib=r.shape.mem_mib,
                limit_failure=limit,
                run_id=run_id,
                job_id=r.job_id,
            )
        )
    return samples


def dispatch_gap(ends: Sequence[datetime], created: datetime | None) -> float | None:
    """Seconds from the last step end before a step's creation to its creation: how long snakemake took
    to hand over a step once something freed it (its last upstream step ended, or a `--jobs` slot);
    None for the steps created before any ended (the run's first burst)."""
    if created is None:
        return None
    i = bisect.bisect_right(ends, created)
    return (created - ends[i - 1]).total_seconds() if i else None
