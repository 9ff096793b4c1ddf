"""The report in a real browser (headless Chromium from Debian): the page renders, its script runs, and
every step of the run is in the DAG and in the timeline; a hostile wildcard stays text."""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

from converged_bridge.report.html import build_report
from converged_bridge.report.record import map_run_records
from converged_bridge.report.svg import target_colors
from tests.unit.browser import count_color, dump_dom, read_png, screenshot
from tests.unit.runs import SEED, T0, finished_step, seed_plan, seed_run

HOSTILE = '<img src=x onerror="document.title=1">'


class Steps(HTMLParser):
    """Which steps each picture holds (data-step inside svg#dag and svg#timeline), their titles, every
    element kind, and the attributes of <html>."""

    def __init__(self) -> None:
        super().__init__()
        self.svg: str | None = None
        self.steps: dict[str, set[str]] = {"dag": set(), "timeline": set()}
        self.titles: list[str] = []
        self.in_title = False
        self.tags: set[str] = set()
        self.root: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "html":
            self.root = a
        if tag == "svg" and a.get("id") in self.steps:
            self.svg = a["id"]
        if self.svg and a.get("data-step"):
            self.steps[self.svg].add(str(a["data-step"]))
        self.in_title = tag == "title" and self.svg is not None

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.svg = None
        if tag == "title":
            self.in_title = False

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.titles.append(data)


def write_report(tmp_path: Path) -> tuple[Path, list[str]]:
    run = seed_run(g1="1,2,3,4", g2="5,6")
    run[0] = finished_step(seed_plan(), SEED[0], 0, 3, 23, wildcards={"job": HOSTILE})
    records, _ = map_run_records(run)
    page = tmp_path / "run.html"
    page.write_text(
        build_report(records, run_id="sm-seed", namespace="team-a", generated_at=T0 + timedelta(seconds=140))
    )
    return page, [r.name for r in records]


def test_every_step_renders_in_the_dag_and_the_timeline(tmp_path: Path) -> None:
    page, names = write_report(tmp_path)
    dom = Steps()
    dom.feed(dump_dom(page, tmp_path / "profile"))
    assert dom.steps["dag"] == set(names) and dom.steps["timeline"] == set(names)
    assert dom.root.get("data-linked-steps") == str(len(names))  # the page's script ran
    for name in names:
        assert sum(title.startswith(f"{name}: ") for title in dom.titles) == 2, name
    assert "img" not in dom.tags  # the hostile wildcard stayed text
    assert any(HOSTILE in title for title in dom.titles)


def test_the_page_paints_every_target_s_colour(tmp_path: Path) -> None:
    page, _ = write_report(tmp_path)
    shot = tmp_path / "run.png"
    screenshot(page, tmp_path / "profile", shot, (1300, 1400))
    width, height, rows = read_png(shot)
    assert (width, height) == (1300, 1400)
    colors = target_colors([("slurm", "s/cpu"), ("slurm", "s/gpu"), ("kueue", "team-a/real")])
    for key, color in colors.items():
        assert count_color(rows, color) > 1000, (key, color)  # DAG boxes and timeline bars
