"""snakemake's own records as history (pure): its metadata record per output file
(`.snakemake/metadata/<base64 of the path>`, JSON) and a rule's `benchmark:` file (TSV).

The metadata record keeps the rule, its code (shell command or run: source), its input paths and the
output's `starttime` / `endtime`. Under a remote executor the main snakemake process writes it:
`starttime` is when the job was submitted, `endtime` the output file's modification time, so its
runtime includes the wait in the queue (an upper bound). A benchmark file holds what snakemake measured
inside the step: wall seconds `s`, `max_rss` (MB) and `cpu_time` (seconds).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from converged_bridge.history.samples import RunSample, build_code_hash


@dataclass(frozen=True)
class SnakemakeRecord:
    """The parts of one metadata record the history uses."""

    rule: str
    code: str | None
    inputs: tuple[str, ...]
    starttime: float
    endtime: float


def parse_snakemake_record(text: str) -> SnakemakeRecord | None:
    """One metadata record; None when it is incomplete, malformed or lacks its times."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("incomplete"):
        return None
    rule, start, end = obj.get("rule"), _number(obj.get("starttime")), _number(obj.get("endtime"))
    if not isinstance(rule, str) or start is None or end is None:
        return None
    code = obj.get("code")
    inputs = obj.get("input")
    return SnakemakeRecord(
        rule=rule,
        code=code if isinstance(code, str) else None,
        inputs=tuple(str(i) for i in inputs) if isinstance(inputs, list) else (),
        starttime=start,
        endtime=end,
    )


def map_snakemake_record(record: SnakemakeRecord, input_bytes: int | None = None) -> RunSample:
    """The record as a history sample (source `snakemake`); its runtime includes the queue wait."""
    return RunSample(
        rule=record.rule,
        code_hash=build_code_hash(record.code),
        runtime_s=max(0.0, record.endtime - record.starttime),
        ended=record.endtime,
        input_bytes=input_bytes,
        source="snakemake",
    )


def dedupe_snakemake_records(records: list[SnakemakeRecord]) -> list[SnakemakeRecord]:
    """One record per job: a job with several outputs writes one record per output, all with the same
    rule, inputs and start time."""
    seen: dict[tuple[str, tuple[str, ...], float], SnakemakeRecord] = {}
    for r in records:
        key = (r.rule, r.inputs, r.starttime)
        if key not in seen or r.endtime > seen[key].endtime:
            seen[key] = r
    return sorted(seen.values(), key=lambda r: r.endtime)


@dataclass(frozen=True)
class BenchmarkFigures:
    """What snakemake measured in a step (the first row of its benchmark file)."""

    wall_s: float | None
    cpu_s: float | None
    max_rss_mib: float | None


_MB_TO_MIB = 1_000_000 / 1_048_576


def parse_benchmark(text: str) -> BenchmarkFigures | None:
    """A `benchmark:` TSV (header line, then one line per repeat; the first is used); None when it has
    no data row. Values snakemake could not measure ("NA", "-") are None."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        return None
    header = lines[0].split("\t")
    row = dict(zip(header, lines[1].split("\t"), strict=False))
    rss = _float(row.get("max_rss"))
    return BenchmarkFigures(
        wall_s=_float(row.get("s")),
        cpu_s=_float(row.get("cpu_time")),
        max_rss_mib=rss * _MB_TO_MIB if rss is not None else None,
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and number >= 0 else None
