"""Small pieces the pictures share: escaping, colours per target, the time axis (pure)."""

from __future__ import annotations

import html
from collections.abc import Iterable

from converged_bridge.report.text import format_duration

# colour-blind-friendly (Okabe-Ito, then Tol's muted): one per backend and target, in sorted order
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#882255",
    "#117733",
    "#999933",
    "#44AA99",
    "#AA4499",
    "#332288",
)
NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)


def esc(text: object) -> str:
    """`text` safe in HTML/SVG text and in a double-quoted attribute."""
    return html.escape(str(text), quote=True)


def target_colors(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """A colour for each (backend, target), stable for the same set of targets."""
    return {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(sorted(set(keys)))}


def tick_step(span: float, most: int = 10) -> float:
    """The smallest nice tick interval that puts at most `most` ticks on `span` seconds."""
    for step in NICE_STEPS:
        if span / step <= most:
            return float(step)
    return float(NICE_STEPS[-1] * (int(span / NICE_STEPS[-1] / most) + 1))


def time_axis(span: float, x0: float, scale: float, y: float, height: float) -> list[str]:
    """SVG lines and labels of the time axis from 0 to `span` seconds, grid lines `height` long."""
    step = tick_step(span)
    out = []
    t = 0.0
    while t <= span + 1e-9:
        x = x0 + t * scale
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{y:.1f}" x2="{x:.1f}" y2="{y + height:.1f}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{y - 4:.1f}">{esc(format_duration(t))}</text>')
        t += step
    return out
