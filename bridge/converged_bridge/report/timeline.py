"""The run's timeline as SVG: one lane per backend and target; in it each step's queued time (created to
started) and running time (started to ended), the plan's estimate drawn under it as an outline (ready to
start) and a hatched bar (start to end); a lane of allocations when steps carry one (pure)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from converged_bridge.report.record import StepRecord, offset, run_start
from converged_bridge.report.svg import esc, time_axis
from converged_bridge.report.text import format_duration

LEFT, PLOT_W, RIGHT = 190.0, 860.0, 200.0  # RIGHT: room for the labels of the last bars
TOP = 30.0
ROW_H, BAR_H, EST_H = 24.0, 10.0, 6.0
LANE_GAP = 12.0
CHAR_W = 6.2  # label width per character at the label's font size
LABEL_CHARS = 30


@dataclass(frozen=True)
class Bar:
    """One step on the time axis, seconds from the run's start (None: did not happen / not estimated)."""

    record: StepRecord
    created: float | None
    started: float | None
    ended: float | None  # `now` for a step still running
    open_end: bool  # still running when the report was made
    est_ready: float | None
    est_start: float | None
    est_end: float | None

    @property
    def first(self) -> float:
        return min((t for t in (self.created, self.est_ready) if t is not None), default=0.0)

    @property
    def last(self) -> float:
        return max(
            (t for t in (self.created, self.started, self.ended, self.est_end) if t is not None), default=0.0
        )


def build_bars(records: Sequence[StepRecord], now: float | None) -> list[Bar]:
    """Each step's times from the run's start; `now` (seconds from the start) ends bars still running."""
    start = run_start(records)
    bars = []
    for r in records:
        started, ended = offset(start, r.started), offset(start, r.ended)
        open_end = started is not None and ended is None and now is not None
        est = r.plan.estimate
        bars.append(
            Bar(
                record=r,
                created=offset(start, r.created),
                started=started,
                ended=now if open_end else ended,
                open_end=open_end,
                est_ready=est.ready if est else None,
                est_start=est.start if est else None,
                est_end=est.end if est else None,
            )
        )
    return bars


def pack_rows(bars: Sequence[Bar], seconds_per_char: float) -> list[tuple[Bar, int]]:
    """Rows within a lane, by start: a bar (with its label) goes to the row freed first if that row is
    free by then, else to a new row, so no two overlap in a row."""
    free_at: list[tuple[float, int]] = []  # (end of the row's last bar, row), a heap
    out = []
    for bar in sorted(bars, key=lambda b: (b.first, b.record.job_id, b.record.name)):
        end = bar.last + (len(_label(bar.record)) + 2) * seconds_per_char
        if free_at and free_at[0][0] <= bar.first:
            _, row = heapq.heapreplace(free_at, (end, free_at[0][1]))
        else:
            row = len(free_at)
            heapq.heappush(free_at, (end, row))
        out.append((bar, row))
    return out


def build_timeline_svg(
    records: Sequence[StepRecord], colors: Mapping[tuple[str, str], str], now: float | None = None
) -> str:
    bars = build_bars(records, now)
    if not bars:
        return '<p class="note">No steps.</p>'
    span = max(max(b.last for b in bars), 1.0)
    scale = PLOT_W / (span * 1.02)
    per_char = CHAR_W / scale
    lanes: dict[tuple[str, str], list[Bar]] = {}
    for b in bars:
        lanes.setdefault((b.record.backend, b.record.target), []).append(b)
    body: list[str] = []
    y = TOP + 8
    for key in sorted(lanes):
        packed = pack_rows(lanes[key], per_char)
        rows = max(row for _, row in packed) + 1
        height = rows * ROW_H
        body.append(
            f'<g class="lane" data-target="{esc(key[1])}"><rect class="lane-bg" x="0" y="{y - 4:.1f}" '
            f'width="{LEFT + PLOT_W + RIGHT:.0f}" height="{height + 4:.1f}"/>'
            f'<text class="lane-name" x="8" y="{y + 12:.1f}">{esc(key[0])} {esc(key[1])}</text>'
            f'<text class="lane-sub" x="8" y="{y + 25:.1f}">{len(lanes[key])} steps</text></g>'
        )
        color = colors.get(key, "#999")
        for bar, row in packed:
            body.append(_step_bar(bar, LEFT, scale, y + row * ROW_H, color))
        y += height + LANE_GAP
    allocations = _allocations(bars)
    if allocations:
        body.append(
            f'<g class="lane"><rect class="lane-bg" x="0" y="{y - 4:.1f}" '
            f'width="{LEFT + PLOT_W + RIGHT:.0f}" '
            f'height="{len(allocations) * ROW_H + 4:.1f}"/>'
            f'<text class="lane-name" x="8" y="{y + 12:.1f}">allocations</text></g>'
        )
        for row, (name, first, last, count) in enumerate(allocations):
            x1, x2 = LEFT + first * scale, LEFT + last * scale
            top = y + row * ROW_H
            body.append(
                f'<g class="allocation" data-group="{esc(name)}">'
                f"<title>allocation {esc(name)}: {count} steps, "
                f"{esc(format_duration(first))} to {esc(format_duration(last))}</title>"
                f'<rect x="{x1:.1f}" y="{top:.1f}" width="{max(x2 - x1, 1):.1f}" '
                f'height="{BAR_H + EST_H:.1f}"/>'
                f'<text class="label" x="{x2 + 4:.1f}" y="{top + 10:.1f}">{esc(name)}</text></g>'
            )
        y += len(allocations) * ROW_H + LANE_GAP
    height = y + 4
    width = LEFT + PLOT_W + RIGHT
    head = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="the run\'s timeline">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#333" stroke-width="2"/>'
        "</pattern></defs>",
        *time_axis(span, LEFT, scale, TOP, height - TOP),
    ]
    return "\n".join([*head, *body, "</svg>"])


def _step_bar(bar: Bar, x0: float, scale: float, top: float, color: str) -> str:
    r = bar.record

    def x(t: float) -> float:
        return x0 + t * scale

    parts = []
    if bar.created is not None:
        queued_until = bar.started if bar.started is not None else bar.ended
        if queued_until is not None:
            parts.append(
                f'<rect class="queued" x="{x(bar.created):.1f}" y="{top:.1f}" '
                f'width="{max(x(queued_until) - x(bar.created), 1):.1f}" height="{BAR_H:.0f}" '
                f'fill="{color}"/>'
            )
    if bar.started is not None and bar.ended is not None:
        parts.append(
            f'<rect class="running{" open" if bar.open_end else ""}" x="{x(bar.started):.1f}" y="{top:.1f}" '
            f'width="{max(x(bar.ended) - x(bar.started), 1):.1f}" height="{BAR_H:.0f}" fill="{color}"/>'
        )
    if bar.est_ready is not None and bar.est_start is not None and bar.est_end is not None:
        parts.append(
            f'<rect class="est-queued" x="{x(bar.est_ready):.1f}" y="{top + BAR_H + 1:.1f}" '
            f'width="{max(x(bar.est_start) - x(bar.est_ready), 0):.1f}" height="{EST_H:.0f}"/>'
            f'<rect class="est-running" x="{x(bar.est_start):.1f}" y="{top + BAR_H + 1:.1f}" '
            f'width="{max(x(bar.est_end) - x(bar.est_start), 1):.1f}" height="{EST_H:.0f}" stroke="{color}"/>'
        )
    title = (
        f"{r.name}: {r.label} | {r.phase} | queued {format_duration(_span(bar.created, bar.started))}, "
        f"ran {format_duration(_span(bar.started, bar.ended))}"
        f"{' so far' if bar.open_end else ''} | estimate: start {format_duration(bar.est_start)}, "
        f"end {format_duration(bar.est_end)}"
    )
    label_x = x(max(t for t in (bar.created, bar.ended, bar.started, bar.est_end, 0.0) if t is not None)) + 4
    return (
        f'<g class="bar step" data-step="{esc(r.name)}"><title>{esc(title)}</title>{"".join(parts)}'
        f'<text class="label" x="{label_x:.1f}" y="{top + 10:.1f}">{esc(_label(r))}</text></g>'
    )


def _label(record: StepRecord) -> str:
    label = record.label
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _span(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else max(0.0, b - a)


def _allocations(bars: Sequence[Bar]) -> list[tuple[str, float, float, int]]:
    """Per allocation (label converged.dev/group): its first step's start to its last step's end."""
    spans: dict[str, list[Bar]] = {}
    for b in bars:
        if b.record.group and b.started is not None:
            spans.setdefault(b.record.group, []).append(b)
    out = []
    for name, members in spans.items():
        first = min(b.started for b in members if b.started is not None)
        last = max((b.ended if b.ended is not None else b.started or 0.0) for b in members)
        out.append((name, first, last, len(members)))
    return sorted(out, key=lambda a: (a[1], a[0]))
