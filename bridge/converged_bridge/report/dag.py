"""The run's DAG as SVG: one box per step coloured by backend and target, arrows from the steps it
waited for (the plan's `depends-on`), the plan's groups drawn around their steps (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from converged_bridge.report.record import StepRecord
from converged_bridge.report.svg import esc

NODE_W, NODE_H = 168.0, 36.0
GAP_X, GAP_Y = 64.0, 14.0
MARGIN = 24.0
LABEL_CHARS = 24


@dataclass(frozen=True)
class Placed:
    record: StepRecord
    level: int
    x: float
    y: float


def plan_levels(records: Sequence[StepRecord]) -> dict[str, int]:
    """Each step's level: 0 without upstream steps in the run, else one more than its deepest upstream
    step. Upstream ids that are no step of the run are left out; steps on a cycle (malformed
    annotations) go one level after what they wait for outside it."""
    by_job: dict[int, list[StepRecord]] = {}
    for r in records:
        by_job.setdefault(r.job_id, []).append(r)
    ups = {
        job: {u for r in rs for u in r.plan.upstream if u in by_job and u != job}
        for job, rs in by_job.items()
    }
    children: dict[int, list[int]] = {job: [] for job in by_job}
    for job, its in ups.items():
        for u in its:
            children[u].append(job)
    waiting = {job: len(its) for job, its in ups.items()}
    level = {job: 0 for job in by_job}
    ready = [job for job, n in waiting.items() if n == 0]
    done: set[int] = set()
    while ready:
        job = ready.pop()
        done.add(job)
        for child in children[job]:
            level[child] = max(level[child], level[job] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    for job in sorted(set(by_job) - done):
        level[job] = 1 + max((level[u] for u in ups[job] if u in done), default=-1)
    return {r.name: level[r.job_id] for r in records}


def place_nodes(records: Sequence[StepRecord]) -> list[Placed]:
    """Levels left to right; within a level, by the mean row of the upstream steps (fewer crossings),
    then rule, job id and name."""
    levels = plan_levels(records)
    by_level: dict[int, list[StepRecord]] = {}
    for r in records:
        by_level.setdefault(levels[r.name], []).append(r)
    rows: dict[int, float] = {}  # job id -> row of its (first) placed step
    placed: list[Placed] = []
    for level, members in sorted(by_level.items()):

        def pull(r: StepRecord) -> float:
            ups = [rows[u] for u in r.plan.upstream if u in rows]
            return sum(ups) / len(ups) if ups else 0.0

        members.sort(key=lambda r: (pull(r), r.rule, r.job_id, r.name))
        for row, r in enumerate(members):
            rows.setdefault(r.job_id, row)
            placed.append(
                Placed(r, level, MARGIN + level * (NODE_W + GAP_X), MARGIN + 16 + row * (NODE_H + GAP_Y))
            )
    return placed


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_dag_svg(records: Sequence[StepRecord], colors: Mapping[tuple[str, str], str]) -> str:
    nodes = place_nodes(records)
    if not nodes:
        return '<p class="note">No steps.</p>'
    width = max(n.x for n in nodes) + NODE_W + MARGIN
    height = max(n.y for n in nodes) + NODE_H + MARGIN
    by_job: dict[int, list[Placed]] = {}
    for n in nodes:
        by_job.setdefault(n.record.job_id, []).append(n)
    out = [
        f'<svg id="dag" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="the run\'s DAG">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker></defs>',
    ]
    out += _groups(nodes)
    for n in nodes:
        for up in n.record.plan.upstream:
            for src in by_job.get(up, []):
                x1, y1 = src.x + NODE_W, src.y + NODE_H / 2
                x2, y2 = n.x, n.y + NODE_H / 2
                mid = (x1 + x2) / 2
                out.append(
                    f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} '
                    f'{x2 - 2:.1f},{y2:.1f}" marker-end="url(#arrow)"/>'
                )
    for n in nodes:
        r = n.record
        color = colors.get((r.backend, r.target), "#999")
        wildcards = ",".join(f"{k}={v}" for k, v in r.wildcards.items())
        title = f"{r.name}: {r.label} | {r.backend} {r.target} | {r.phase}"
        if r.plan.group:
            title += f" | plan group {r.plan.group}"
        out.append(
            f'<g class="node step {esc(r.backend)}" data-step="{esc(r.name)}" '
            f'transform="translate({n.x:.1f},{n.y:.1f})"><title>{esc(title)}</title>'
            f'<rect width="{NODE_W:.0f}" height="{NODE_H:.0f}" rx="6" fill="{color}"/>'
            f'<text class="name" x="8" y="15">{esc(_short(r.rule))}</text>'
            f'<text class="sub" x="8" y="29">{esc(_short(wildcards or r.target))}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _groups(nodes: Sequence[Placed]) -> list[str]:
    """A dashed box around each plan group's steps, named at its top left."""
    members: dict[str, list[Placed]] = {}
    for n in nodes:
        if n.record.plan.group:
            members.setdefault(n.record.plan.group, []).append(n)
    out = []
    for name, group in sorted(members.items(), key=lambda kv: (_number(kv[0]), kv[0])):
        x1 = min(n.x for n in group) - 8
        y1 = min(n.y for n in group) - 14
        x2 = max(n.x for n in group) + NODE_W + 8
        y2 = max(n.y for n in group) + NODE_H + 6
        out.append(
            f'<g class="group" data-group="{esc(name)}">'
            f"<title>plan group {esc(name)}: {len(group)} steps</title>"
            f'<rect x="{x1:.1f}" y="{y1:.1f}" width="{x2 - x1:.1f}" height="{y2 - y1:.1f}" rx="10"/>'
            f'<text x="{x1 + 6:.1f}" y="{y1 + 11:.1f}">{esc(name)}</text></g>'
        )
    return out


def _number(name: str) -> int:
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else 0
