"""The run's history on disk, per user and workflow: read before the plan, appended when the run ends.

The store is `.snakemake/converged/history/<user>.jsonl` in the workflow directory (on the shared
filesystem, written by the user running snakemake): one JSON line per finished step
(`converged_bridge.history.samples`). It outlives the WorkflowSteps, which the controller deletes some
time after they finish. snakemake's own metadata records (`.snakemake/metadata/`) are read too: rules that
ran before the store existed, or with another executor, start with their figures.

The facts a step carries for the history (its rule's code digest, input size, benchmark file) are read
off the snakemake job here; everything else is pure, in `converged_bridge.history`.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from converged_bridge.history import (
    BenchmarkFigures,
    RunSample,
    build_code_hash,
    build_history_lines,
    dedupe_snakemake_records,
    map_snakemake_record,
    parse_benchmark,
    parse_history_lines,
    parse_snakemake_record,
)

SNAKEMAKE_RECORDS_MAX = 20_000  # metadata files read at most (one per output file)


def history_path(working_dir: str, user: str) -> str:
    return os.path.join(working_dir, ".snakemake", "converged", "history", f"{user}.jsonl")


def current_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


@dataclass(frozen=True)
class HistoryRead:
    samples: list[RunSample]
    skipped: int  # lines of the store that did not parse
    from_snakemake: int  # samples taken from snakemake's metadata records


def read_history(working_dir: str, user: str) -> HistoryRead:
    """The store's samples, then those of snakemake's metadata records; an unreadable store is empty."""
    try:
        with open(history_path(working_dir, user), encoding="utf-8") as f:
            samples, skipped = parse_history_lines(f.read())
    except OSError:
        samples, skipped = [], 0
    theirs = read_snakemake_samples(working_dir)
    return HistoryRead(samples + theirs, skipped, len(theirs))


def read_snakemake_samples(working_dir: str) -> list[RunSample]:
    """snakemake's metadata records as samples, input sizes as the inputs are now (None if one is gone)."""
    folder = os.path.join(working_dir, ".snakemake", "metadata")
    try:
        names = sorted(os.listdir(folder))[:SNAKEMAKE_RECORDS_MAX]
    except OSError:
        return []
    records = []
    for name in names:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                record = parse_snakemake_record(f.read())
        except (OSError, UnicodeDecodeError):
            continue
        if record is not None:
            records.append(record)
    return [
        map_snakemake_record(r, read_input_bytes(working_dir, r.inputs))
        for r in dedupe_snakemake_records(records)
    ]


def append_history(working_dir: str, user: str, samples: Iterable[RunSample]) -> str:
    """Append `samples` to the store (one write, O_APPEND: concurrent runs do not interleave lines);
    returns its path. Raises OSError."""
    path = history_path(working_dir, user)
    text = build_history_lines(samples)
    if text:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    return path


def read_input_bytes(working_dir: str, paths: Iterable[str]) -> int | None:
    """The inputs' total size; None when there are none or one does not exist (yet)."""
    total, seen = 0, False
    for p in paths:
        try:
            total += os.path.getsize(os.path.join(working_dir, p))
        except OSError:
            return None
        seen = True
    return total if seen else None


def read_benchmarks(working_dir: str, paths: Iterable[str]) -> dict[str, BenchmarkFigures]:
    """The benchmark files that exist and parse, by the path given."""
    out = {}
    for p in set(paths):
        try:
            with open(os.path.join(working_dir, p), encoding="utf-8") as f:
                figures = parse_benchmark(f.read())
        except (OSError, UnicodeDecodeError):
            continue
        if figures is not None:
            out[p] = figures
    return out


@dataclass(frozen=True)
class JobHistoryFacts:
    rule: str
    code_hash: str
    input_bytes: int | None
    benchmark: str | None


def rule_code(rule: Any) -> str | None:
    """What identifies a rule's code, as snakemake's metadata does: its shell command or run: source;
    else its script, notebook, wrapper or CWL reference."""
    for attr in ("shellcmd", "run_func_src", "script", "notebook", "wrapper", "cwl"):
        value = getattr(rule, attr, None)
        if value:
            return str(value)
    return None


def read_job_history_facts(job: Any, working_dir: str) -> JobHistoryFacts | None:
    """The history facts of a single job (None for a group job)."""
    if job.is_group():
        return None
    benchmark = getattr(job, "benchmark", None)
    return JobHistoryFacts(
        rule=str(job.rule.name),
        code_hash=build_code_hash(rule_code(job.rule)),
        input_bytes=read_input_bytes(working_dir, [str(f) for f in job.input]),
        benchmark=str(benchmark) if benchmark else None,
    )


def index_samples(samples: Iterable[RunSample]) -> Mapping[tuple[str, str], list[RunSample]]:
    """Samples by (rule, code digest), in the order given."""
    out: dict[tuple[str, str], list[RunSample]] = {}
    for s in samples:
        out.setdefault((s.rule, s.code_hash), []).append(s)
    return out
