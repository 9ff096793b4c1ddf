"""A step's runtime and memory from the history of its rule, the declared limits only as a fallback
(pure).

Runtime: the mean of the rule's steps in the workflow's last two runs (Tsafrir, Etsion and Feitelson,
"Backfilling using system-generated predictions rather than user runtime estimates", IEEE TPDS 2007: a
user's own last two runs predict better than the limits users give; a rule fanned out over many steps
has many per run, and its last two steps alone would be the run's tail), or, when the rule's recent
runs show that runtime grows with input size (a least-squares line with R² >= `FIT_R2`), that line at
the step's input size.
Memory: the largest peak of the recent runs that measured one. How sure: `runs` seen and `spread`, the
recent runtimes' coefficient of variation (the fit's relative RMS residual when the line is used).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from converged_bridge.history.samples import RunSample

WINDOW = 20  # recent runs looked at
RECENT = 2  # runs averaged (Tsafrir)
FIT_MIN_RUNS = 3
FIT_R2 = 0.8

Basis = Literal["history", "declared"]


@dataclass(frozen=True)
class Declared:
    """The rule's declared limits; `runtime_s` is the plan's default when the rule declares none
    (`runtime_assumed`)."""

    runtime_s: float
    mem_mib: float | None = None
    runtime_assumed: bool = False


@dataclass(frozen=True)
class Estimate:
    runtime_s: float
    mem_mib: float | None
    basis: Basis  # of the runtime
    runs: int = 0  # successful runs of the rule (same code) seen, at most WINDOW
    spread: float | None = None  # relative; None with fewer than two runs
    scaled: bool = False  # runtime from the input-size line
    mem_basis: Basis = "declared"

    def describe(self) -> str:
        """`history 5 runs ±12%`, `history 3 runs, by input size`, `declared`."""
        if self.basis == "declared":
            return "declared"
        text = f"history {self.runs} run{'s' if self.runs != 1 else ''}"
        if self.spread is not None:
            text += f" ±{round(100 * self.spread)}%"
        return text + (", by input size" if self.scaled else "")

    def short(self) -> str:
        """`describe` in one word, for tables split by spaces: `history(5,±12%)`, `history(3,±4%,size)`."""
        if self.basis == "declared":
            return "declared"
        parts = [str(self.runs)]
        if self.spread is not None:
            parts.append(f"±{round(100 * self.spread)}%")
        if self.scaled:
            parts.append("size")
        return f"history({','.join(parts)})"


def select_samples(samples: Iterable[RunSample], rule: str, code_hash: str) -> list[RunSample]:
    """The successful runs of `rule` with this code, oldest first, the last `WINDOW`. Runs measured on
    the steps themselves are preferred: snakemake's records (which include the queue wait) are used only
    when there are none."""
    matching = [s for s in samples if s.rule == rule and s.code_hash == code_hash and s.succeeded]
    own = [s for s in matching if s.source == "step"]
    chosen = own or matching
    return sorted(chosen, key=lambda s: s.ended)[-WINDOW:]


@dataclass(frozen=True)
class Line:
    intercept: float
    slope: float
    residual: float  # relative RMS residual

    def at(self, x: float) -> float:
        return self.intercept + self.slope * x


def fit_input_line(samples: Sequence[RunSample]) -> Line | None:
    """Runtime against input bytes by least squares; None unless at least `FIT_MIN_RUNS` runs of at least
    two input sizes lie close to a rising line (R² >= `FIT_R2`)."""
    points = [(float(s.input_bytes), s.runtime_s) for s in samples if s.input_bytes is not None]
    if len(points) < FIT_MIN_RUNS or len({x for x, _ in points}) < 2:
        return None
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in points)
    ss_tot = sum((y - my) ** 2 for y in ys)
    if slope <= 0 or ss_tot <= 0 or 1 - ss_res / ss_tot < FIT_R2 or my <= 0:
        return None
    return Line(intercept, slope, math.sqrt(ss_res / len(points)) / my)


def estimate_step(
    history: Sequence[RunSample], declared: Declared, input_bytes: int | None = None
) -> Estimate:
    """The step's estimate from `history` (its rule's runs, as `select_samples` gives them)."""
    runtimes = [s.runtime_s for s in history]
    peaks = [s.max_rss_mib for s in history if s.max_rss_mib is not None]
    mem = max(peaks) if peaks else declared.mem_mib
    mem_basis: Basis = "history" if peaks else "declared"
    if not runtimes:
        return Estimate(declared.runtime_s, mem, "declared", mem_basis=mem_basis)
    line = fit_input_line(history) if input_bytes is not None else None
    if line is not None and input_bytes is not None:
        runtime = max(1.0, line.at(float(input_bytes)))
        spread: float | None = line.residual
    else:
        runtime = statistics.fmean(s.runtime_s for s in last_runs(history))
        spread = coefficient_of_variation(runtimes)
    return Estimate(
        runtime_s=runtime,
        mem_mib=mem,
        basis="history",
        runs=len(runtimes),
        spread=spread,
        scaled=line is not None,
        mem_basis=mem_basis,
    )


def last_runs(history: Sequence[RunSample], runs: int = RECENT) -> list[RunSample]:
    """The samples of the last `runs` workflow runs (by run id, in the order they ended); samples without
    a run id (snakemake's records) count as one run each."""
    chosen: list[RunSample] = []
    seen: set[str] = set()
    for s in reversed(history):
        key = s.run_id or f"#{id(s)}"
        if key not in seen:
            if len(seen) == runs:
                break
            seen.add(key)
        chosen.append(s)
    return chosen


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.pstdev(values) / mean if mean > 0 else 0.0


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` percentile by linear interpolation between closest ranks; values non-empty."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
