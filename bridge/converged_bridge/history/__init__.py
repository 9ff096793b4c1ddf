"""What past runs teach the plan (pure): samples of finished steps per rule (`samples`: the store's
JSON lines; `snakemake_records`: snakemake's metadata and benchmark files), estimates from them with the
declared limits as a fallback (`estimate`), right-sized requests and the retry at the declared limits
(`sizing`), and the notes a WorkflowStep carries for them (`annotations`)."""

from converged_bridge.history.annotations import (
    StepHistoryNotes,
    build_history_annotations,
    parse_history_annotations,
)
from converged_bridge.history.estimate import (
    Declared,
    Estimate,
    estimate_step,
    fit_input_line,
    percentile,
    select_samples,
)
from converged_bridge.history.samples import (
    RunSample,
    build_code_hash,
    build_history_lines,
    parse_history_lines,
)
from converged_bridge.history.sizing import (
    LimitKind,
    RightSize,
    classify_limit_failure,
    plan_declared_retry,
    plan_right_size,
)
from converged_bridge.history.snakemake_records import (
    BenchmarkFigures,
    SnakemakeRecord,
    dedupe_snakemake_records,
    map_snakemake_record,
    parse_benchmark,
    parse_snakemake_record,
)

__all__ = [
    "BenchmarkFigures",
    "Declared",
    "Estimate",
    "LimitKind",
    "RightSize",
    "RunSample",
    "SnakemakeRecord",
    "StepHistoryNotes",
    "build_code_hash",
    "build_history_annotations",
    "build_history_lines",
    "classify_limit_failure",
    "dedupe_snakemake_records",
    "estimate_step",
    "fit_input_line",
    "map_snakemake_record",
    "parse_benchmark",
    "parse_history_annotations",
    "parse_history_lines",
    "parse_snakemake_record",
    "percentile",
    "plan_declared_retry",
    "plan_right_size",
    "select_samples",
]
