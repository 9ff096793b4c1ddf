"""What a WorkflowStep carries for the history, as one small JSON annotation (pure): the key of its
rule's history (code digest), its input size, the estimate the plan used, the limits the rule declared,
what was requested when right-sized, its benchmark file, and whether it is the retry at the declared
limits. The plugin writes it; the end-of-run summary, the report and the history store read it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from converged_bridge.history.estimate import Basis, Estimate
from converged_bridge.history.sizing import RightSize
from converged_bridge.wire import HISTORY_ANNOTATION


@dataclass(frozen=True)
class StepHistoryNotes:
    code_hash: str = "-"
    input_bytes: int | None = None
    estimate: Estimate | None = None
    declared_minutes: int | None = None
    declared_mem_mib: int | None = None
    sizing: RightSize | None = None  # set when the run right-sizes requests
    benchmark: str | None = None  # the rule's benchmark file, relative to the workflow directory
    declared_retry: bool = False  # the retry at the declared limits of a step killed at a learnt one


def build_history_annotations(notes: StepHistoryNotes) -> dict[str, str]:
    obj: dict[str, Any] = {"code": notes.code_hash}
    if notes.input_bytes is not None:
        obj["in"] = notes.input_bytes
    if notes.estimate is not None:
        e = notes.estimate
        obj["est"] = {
            "s": round(e.runtime_s, 1),
            "basis": e.basis,
            "runs": e.runs,
            **({"spread": round(e.spread, 3)} if e.spread is not None else {}),
            **({"mem": round(e.mem_mib)} if e.mem_mib is not None else {}),
            **({"scaled": True} if e.scaled else {}),
            "memBasis": e.mem_basis,
        }
    declared = {"min": notes.declared_minutes, "mem": notes.declared_mem_mib}
    obj["declared"] = {k: v for k, v in declared.items() if v is not None}
    if notes.sizing is not None:
        s = notes.sizing
        obj["sized"] = {
            **({"min": s.runtime_minutes} if s.runtime_minutes is not None else {}),
            **({"mem": s.mem_mib} if s.mem_mib is not None else {}),
            "t": s.runtime_learnt,
            "m": s.mem_learnt,
        }
    if notes.benchmark:
        obj["bench"] = notes.benchmark
    if notes.declared_retry:
        obj["retry"] = True
    return {HISTORY_ANNOTATION: json.dumps(obj, separators=(",", ":"), sort_keys=True)}


def parse_history_annotations(annotations: Mapping[str, str]) -> StepHistoryNotes | None:
    """The notes of a step; None when it carries none or they do not parse."""
    raw = annotations.get(HISTORY_ANNOTATION)
    if not raw:
        return None
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    declared = _dict(obj.get("declared"))
    sized = obj.get("sized")
    return StepHistoryNotes(
        code_hash=str(obj.get("code") or "-"),
        input_bytes=_int(obj.get("in")),
        estimate=_estimate(obj.get("est")),
        declared_minutes=_int(declared.get("min")),
        declared_mem_mib=_int(declared.get("mem")),
        sizing=RightSize(
            runtime_minutes=_int(sized.get("min")),
            mem_mib=_int(sized.get("mem")),
            runtime_learnt=sized.get("t") is True,
            mem_learnt=sized.get("m") is True,
        )
        if isinstance(sized, dict)
        else None,
        benchmark=obj["bench"] if isinstance(obj.get("bench"), str) else None,
        declared_retry=obj.get("retry") is True,
    )


def _estimate(value: Any) -> Estimate | None:
    est = _dict(value)
    seconds = _float(est.get("s"))
    if seconds is None:
        return None
    basis: Basis = "history" if est.get("basis") == "history" else "declared"
    mem_basis: Basis = "history" if est.get("memBasis") == "history" else "declared"
    return Estimate(
        runtime_s=seconds,
        mem_mib=_float(est.get("mem")),
        basis=basis,
        runs=_int(est.get("runs")) or 0,
        spread=_float(est.get("spread")),
        scaled=est.get("scaled") is True,
        mem_basis=mem_basis,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None
