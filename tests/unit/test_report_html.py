"""The run's report as one self-contained HTML page: built from records, every step in both pictures,
user strings escaped, no resource from the network, the allocations lane only when steps carry one;
`kubectl converged report` reading the run with one LIST."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from typing import Any

import pytest

from converged_bridge.cli.report import NoSuchRun, read_run_report
from converged_bridge.report.dag import place_nodes, plan_levels
from converged_bridge.report.html import build_report
from converged_bridge.report.record import map_run_records
from converged_bridge.report.timeline import build_bars, pack_rows
from tests.unit.runs import SEED, SEED_RAN, T0, finished_step, seed_plan, seed_run
from tests.unit.test_report_summary import RunSteps

HOSTILE = '<img src=x onerror="alert(1)">&\'"'


def report(objects: list[dict[str, Any]], seconds: float = 140) -> str:
    records, invalid = map_run_records(objects)
    return build_report(
        records,
        run_id="sm-seed",
        namespace="team-a",
        generated_at=T0 + timedelta(seconds=seconds),
        invalid=invalid,
    )


def svg(page: str, name: str) -> str:
    start = page.index(f'<svg id="{name}"')
    return page[start : page.index("</svg>", start)]


def test_every_step_is_in_the_dag_the_timeline_and_the_table() -> None:
    page = report(seed_run())
    dag, timeline = (svg(page, "dag"), svg(page, "timeline"))
    for e in SEED:
        name = f'data-step="sm-seed-{e.rule}-{e.jobid}"'
        assert dag.count(name) == 1 and timeline.count(name) == 1, name
        assert page.count(name) == 3  # and its row in the table
    assert dag.count('class="edge"') == 8  # 6 in the chains, 2 into the report step
    assert [m for m in re.findall(r'data-group="([^"]+)"', dag)] == ["g1", "g2", "g3", "g4"]


def test_self_contained_nothing_from_the_network() -> None:
    page = report(seed_run())
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "default-src 'none'" in page
    assert not re.search(r"\b(src|href)\s*=", page)
    assert not re.search(r"<(link|img|iframe|object|embed)\b", page)
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace, a name never fetched


def test_user_strings_are_escaped_everywhere() -> None:
    plan = seed_plan()
    step = finished_step(plan, SEED[0], 0, 1, 2, wildcards={"job": HOSTILE})
    step["spec"]["workflow"]["rule"] = HOSTILE
    step["metadata"]["labels"]["converged.dev/group"] = HOSTILE
    page = report([step, *seed_run()[1:]])
    assert "<img" not in page and 'onerror="' not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#x27;&quot;" in page


def test_allocations_lane_only_when_steps_carry_one() -> None:
    without = report(seed_run())
    assert 'class="allocation"' not in without and "No step carries an allocation" in without
    grouped = report(seed_run(g1="1,2,3,4", g2="5,6"))
    assert re.findall(r'class="allocation" data-group="([^"]+)"', grouped) == ["g1", "g2"]
    assert "allocation g1: 4 steps, 3s to 49s" in grouped


def test_a_run_in_progress_draws_running_steps_up_to_now() -> None:
    run = seed_run()
    for obj in run[6:]:
        obj["status"].pop("completionTime")
        obj["status"]["phase"] = "Running"
    records, _ = map_run_records(run)
    bars = {b.record.job_id: b for b in build_bars(records, now=140)}
    assert bars[9].open_end and bars[9].ended == 140 and bars[1].ended == 23 and not bars[1].open_end
    assert 'class="running open"' in report(run)


def test_levels_and_rows() -> None:
    records, _ = map_run_records(seed_run())
    levels = plan_levels(records)
    assert [levels[r.name] for r in records] == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    nodes = place_nodes(records)
    assert len({(n.x, n.y) for n in nodes}) == len(records)
    packed = pack_rows(build_bars(records, None), seconds_per_char=0.0)
    rows: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for bar, row in packed:
        rows.setdefault((bar.record.target, row), []).append((bar.first, bar.last))
    for spans in rows.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_a_cycle_in_malformed_annotations_does_not_hang() -> None:
    run = seed_run()[:2]
    run[0]["metadata"]["annotations"]["converged.dev/depends-on"] = "2"
    run[1]["metadata"]["annotations"]["converged.dev/depends-on"] = "1"
    records, _ = map_run_records(run)
    assert sorted(plan_levels(records).values()) == [0, 0]
    assert report(run).count('class="node step') == 2


def test_kubectl_converged_report_reads_the_run_with_one_list() -> None:
    steps = RunSteps(seed_run())
    page = read_run_report(steps, "team-a", "sm-seed", now=T0 + timedelta(seconds=SEED_RAN[9][2] or 0))  # type: ignore[arg-type]
    assert steps.lists == 1 and page.startswith("<!doctype html>")
    text = read_run_report(steps, "team-a", "sm-seed", now=T0, summary=True)  # type: ignore[arg-type]
    assert text.startswith("converged run sm-seed: 9 steps")
    with pytest.raises(NoSuchRun, match=r"converged\.dev/run=sm-none"):
        read_run_report(RunSteps([]), "team-a", "sm-none", now=T0)  # type: ignore[arg-type]
