"""Figures as text: durations and the CPU/memory/GPU-hours table, estimate beside measure (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from converged_bridge.schedule import Usage

Key = tuple[str, str]  # (backend, target)


def format_duration(seconds: float | None) -> str:
    """`45s`, `7m05s`, `2h03m`; `-` when unknown."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_hours(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def render_usage_table(
    estimated: Mapping[Key, Usage], measured: Mapping[Key, Usage] | None = None
) -> list[str]:
    """One row per backend and target and a total: CPU-, memory GiB- and GPU-hours, estimated and
    (when given) measured."""
    keys = sorted(set(estimated) | set(measured or {}))
    columns = ["CPU-h", "mem GiB-h", "GPU-h"]
    header = ["BACKEND TARGET"]
    if measured is None:
        header += columns
    else:
        header += [f"{c} {side}" for c in columns for side in ("est", "measured")]
    rows = [header]

    def cells(est: Usage, got: Usage) -> list[str]:
        out = []
        for e, m in zip(_figures(est), _figures(got), strict=True):
            out.append(format_hours(e))
            if measured is not None:
                out.append(format_hours(m))
        return out

    total_est, total_got = Usage(), Usage()
    for key in keys:
        est = estimated.get(key, Usage())
        got = (measured or {}).get(key, Usage())
        total_est, total_got = total_est + est, total_got + got
        rows.append([f"{key[0]} {key[1]}", *cells(est, got)])
    rows.append(["total", *cells(total_est, total_got)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]


def _figures(usage: Usage) -> tuple[float, float, float]:
    return (usage.cpu_hours, usage.mem_gib_hours, usage.gpu_hours)
