"""The run's report: one self-contained HTML page (inline CSS and SVG, a few lines of inline script, no
network) with the figures, the DAG and the timeline, estimate beside measure (pure).
`kubectl converged report RUN` reads the run's WorkflowSteps and prints it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from converged_bridge.report.dag import build_dag_svg
from converged_bridge.report.record import StepRecord, offset, run_start, running_seconds
from converged_bridge.report.rules import RULE_HEADER, build_rule_rows, rule_cells
from converged_bridge.report.summary import RunSummary, build_run_summary
from converged_bridge.report.svg import esc, target_colors
from converged_bridge.report.text import format_duration, format_hours
from converged_bridge.report.timeline import build_timeline_svg
from converged_bridge.schedule import Usage
from converged_bridge.wire import GROUP_LABEL

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}
td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555}.scroll{overflow:auto;max-width:100%;border:1px solid #eee}
.legend span{display:inline-block;margin-right:14px}.swatch{display:inline-block;width:12px;height:12px;
vertical-align:middle;margin-right:4px;border-radius:2px}
svg text{font:11px system-ui,sans-serif}
.node rect{stroke:#333;stroke-width:1}.node.kueue rect{stroke-dasharray:4 2;stroke-width:1.5}
.node text{fill:#fff}.node .name{font-weight:600}
.edge{fill:none;stroke:#777;stroke-width:1.2}
.group rect{fill:#f4f4f4;stroke:#888;stroke-dasharray:6 3}.group text{fill:#555;font-weight:600}
.grid{stroke:#e4e4e4}.tick{fill:#666;text-anchor:middle}
.lane-bg{fill:#fafafa}.lane-name{font-weight:600}.lane-sub{fill:#777}
.queued{opacity:.35}.running.open{opacity:.7}
.est-queued{fill:none;stroke:#555;stroke-width:.8;stroke-dasharray:2 2}
.est-running{fill:url(#hatch);stroke-width:1}
.allocation rect{fill:#ccc;stroke:#555}
.label{fill:#333}
.step.hl rect{stroke:#000;stroke-width:2.5}tr.hl{background:#ffec99}
"""

# hovering a step highlights it in the DAG, the timeline and the table; the page works without it
SCRIPT = """
(function(){
  var all=document.querySelectorAll('[data-step]');var by={};
  all.forEach(function(el){var k=el.getAttribute('data-step');(by[k]=by[k]||[]).push(el);});
  Object.keys(by).forEach(function(k){by[k].forEach(function(el){
    el.addEventListener('mouseenter',function(){by[k].forEach(function(o){o.classList.add('hl');});});
    el.addEventListener('mouseleave',function(){by[k].forEach(function(o){o.classList.remove('hl');});});
  });});
  document.documentElement.setAttribute('data-linked-steps',String(Object.keys(by).length));
})();
"""


def build_report(
    records: Sequence[StepRecord],
    *,
    run_id: str,
    namespace: str,
    generated_at: datetime,
    invalid: Sequence[str] = (),
) -> str:
    """The report of the run whose steps are `records`; `generated_at` ends bars still running."""
    summary = build_run_summary(records)
    colors = target_colors((r.backend, r.target) for r in records)
    now = offset(run_start(records), generated_at)
    allocated = any(r.group for r in records)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        f"<title>converged run {esc(run_id)}</title><style>{STYLE}</style></head><body>",
        f"<h1>converged run {esc(run_id)} <small>in namespace {esc(namespace)}</small></h1>",
        f'<p class="note">{len(records)} steps; report made '
        f"{esc(generated_at.isoformat(timespec='seconds'))}."
        " Times are from the run's first step's creation; the estimate is the plan's (its annotations),"
        " the measure is each step's status.</p>",
    ]
    if invalid:
        parts.append(f'<p class="note">Left out (not valid WorkflowSteps): {esc(", ".join(invalid))}</p>')
    parts += _figures(summary)
    parts += _rule_table(records)
    parts += [
        "<h2>DAG</h2>",
        _legend(colors),
        '<p class="note">Boxes are steps coloured by backend and target (dashed border: Kubernetes through'
        " Kueue); arrows come from the steps each waited for; grey dashed boxes are the plan's groups.</p>",
        f'<div class="scroll">{build_dag_svg(records, colors)}</div>',
        "<h2>Timeline</h2>",
        '<p class="note">One lane per target. Upper bar: queued (light, created to started) and running'
        " (solid, started to ended). Lower bar: the plan's estimate, waiting (dotted outline) and running"
        " (hatched).</p>",
    ]
    if not allocated:
        parts.append(
            f'<p class="note">No step carries an allocation (label {esc(GROUP_LABEL)}): each ran in an'
            " allocation of its own, so there is no lane of allocations.</p>"
        )
    parts += [f'<div class="scroll">{build_timeline_svg(records, colors, now)}</div>', "<h2>Steps</h2>"]
    parts += _step_table(records)
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _figures(summary: RunSummary) -> list[str]:
    rows = [
        "<h2>Figures</h2><table><tr><th></th><th>estimated</th><th>measured</th></tr>",
        f"<tr><td>makespan</td><td class=n>{esc(format_duration(summary.estimated_makespan))}</td>"
        f"<td class=n>{esc(format_duration(summary.measured_makespan))}</td></tr>",
        f"<tr><td>steps</td><td class=n>{summary.estimated_steps}</td>"
        f"<td class=n>{summary.measured_steps}</td>"
        "</tr></table>",
        "<table><tr><th>backend</th><th>target</th><th>CPU-h est</th><th>CPU-h measured</th>"
        "<th>mem GiB-h est</th><th>mem GiB-h measured</th><th>GPU-h est</th><th>GPU-h measured</th></tr>",
    ]
    for key in sorted(set(summary.estimated) | set(summary.measured)):
        est, got = summary.estimated.get(key, Usage()), summary.measured.get(key, Usage())
        cells = "".join(
            f"<td class=n>{format_hours(v)}</td>"
            for pair in zip(
                (est.cpu_hours, est.mem_gib_hours, est.gpu_hours),
                (got.cpu_hours, got.mem_gib_hours, got.gpu_hours),
                strict=True,
            )
            for v in pair
        )
        rows.append(f"<tr><td>{esc(key[0])}</td><td>{esc(key[1])}</td>{cells}</tr>")
    rows.append("</table>")
    return rows


def _rule_table(records: Sequence[StepRecord]) -> list[str]:
    rows = build_rule_rows(records, (), {})
    out = [
        "<h2>Per rule</h2>",
        '<p class="note">Runtime per step: the estimate the plan used (its basis: the rule\'s past runs, or'
        " the declared limit) beside the measured mean; requested time and memory (right-sized requests"
        " show the declared limit too) beside the longest run. Memory and CPU used are measured only by"
        " a rule's benchmark: file, which the end-of-run summary reads, with the next plan's estimate;"
        " this page has only the steps' status.</p>",
        "<table><tr>" + "".join(f"<th>{esc(h.lower())}</th>" for h in RULE_HEADER) + "</tr>",
    ]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in rule_cells(row)) + "</tr>")
    out.append("</table>")
    return out


def _legend(colors: dict[tuple[str, str], str]) -> str:
    items = "".join(
        f'<span><i class="swatch" style="background:{color}"></i>{esc(backend)} {esc(target)}</span>'
        for (backend, target), color in colors.items()
    )
    return f'<p class="legend">{items}</p>'


def _step_table(records: Sequence[StepRecord]) -> list[str]:
    start = run_start(records)
    rows = [
        "<table><tr><th>step</th><th>rule</th><th>wildcards</th><th>backend</th><th>target</th>"
        "<th>group</th><th>phase</th><th>created</th><th>started</th><th>ended</th>"
        "<th>est. start</th><th>est. end</th><th>est. runtime</th><th>runtime</th><th>basis</th>"
        "<th>time requested</th><th>mem requested</th></tr>"
    ]
    for r in records:
        est = r.plan.estimate
        wildcards = ", ".join(f"{k}={v}" for k, v in r.wildcards.items())
        times = (offset(start, r.created), offset(start, r.started), offset(start, r.ended))
        cells = [
            r.name,
            r.rule,
            wildcards or "-",
            r.backend,
            r.target,
            r.group or r.plan.group or "-",
            r.phase,
        ]
        rows.append(
            f'<tr data-step="{esc(r.name)}">'
            + "".join(f"<td>{esc(c)}</td>" for c in cells)
            + "".join(f"<td class=n>{esc(format_duration(t))}</td>" for t in times)
            + f"<td class=n>{esc(format_duration(est.start if est else None))}</td>"
            + f"<td class=n>{esc(format_duration(est.end if est else None))}</td>"
            + "".join(f"<td class=n>{esc(c)}</td>" for c in _sizing_cells(r))
            + "</tr>"
        )
    rows.append("</table>")
    return rows


def _sizing_cells(r: StepRecord) -> list[str]:
    """Estimated runtime, measured runtime, the estimate's basis, requested time and memory (with the
    declared limit when the request was learnt)."""
    notes = r.history
    learnt = notes.estimate if notes else None
    planned = r.plan.estimate
    estimate = learnt.runtime_s if learnt else (planned.end - planned.start if planned else None)
    sized = notes.sizing if notes else None
    minutes = f"{r.shape.runtime_minutes}m" if r.shape.runtime_minutes else "-"
    mem = f"{r.shape.mem_mib}Mi" if r.shape.mem_mib else "-"
    if sized is not None and notes is not None and sized.runtime_learnt:
        minutes += f" (declared {notes.declared_minutes}m)"
    if sized is not None and notes is not None and sized.mem_learnt:
        mem += f" (declared {notes.declared_mem_mib}Mi)"
    return [
        format_duration(estimate),
        format_duration(running_seconds(r)),
        learnt.describe() if learnt else "-",
        minutes + (" retry" if notes and notes.declared_retry else ""),
        mem,
    ]
