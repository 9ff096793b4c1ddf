"""A run as the history sees it: its finished steps become samples (benchmarks read from real captured
files), the store is appended and read back, the summary and the report show estimate beside measure and
requested beside used per rule, and a step killed at a learnt request is retried once."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from converged_bridge.api.workflowstep import Phase
from converged_bridge.history import (
    Estimate,
    RightSize,
    RunSample,
    StepHistoryNotes,
    build_history_lines,
    parse_benchmark,
)
from converged_bridge.report.history_samples import build_run_samples
from converged_bridge.report.html import build_report
from converged_bridge.report.record import map_run_records
from converged_bridge.report.rules import build_rule_rows, render_rule_table
from converged_bridge.report.summary import build_run_summary, render_run_summary
from snakemake_executor_plugin_converged.history import history_path, read_history
from snakemake_executor_plugin_converged.learning import RunHistory
from tests.unit.runs import SEED, SEED_RAN, T0, finished_step, seed_plan

DATA = Path(__file__).resolve().parents[1] / "data" / "history"
LEARNT = Estimate(20.0, 3.0, "history", runs=4, spread=0.1, mem_basis="history")


def notes(job_id: int, **extra: Any) -> StepHistoryNotes:
    values: dict[str, Any] = {
        "code_hash": f"code-{SEED[job_id - 1].rule}",
        "input_bytes": 1000 * job_id,
        "estimate": LEARNT if SEED[job_id - 1].rule == "preprocess" else None,
        "benchmark": "bench/b.count.tsv" if job_id == 1 else None,
    }
    return StepHistoryNotes(**{**values, **extra})


def run_objects(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    """The seed run, each step with history notes; `changes` per job id ("j3": {...}) for finished_step."""
    plan = seed_plan()
    out = []
    for e in SEED:
        extra = {"history": notes(e.jobid), **changes.get(f"j{e.jobid}", {})}
        out.append(finished_step(plan, e, *SEED_RAN[e.jobid], **extra))
    return out


def benchmarks() -> dict[str, Any]:
    figures = parse_benchmark((DATA / "benchmarks" / "b.count.tsv").read_text())
    assert figures is not None
    return {"bench/b.count.tsv": figures}


def test_finished_steps_become_samples_with_their_measures() -> None:
    killed = {"phase": Phase.FAILED, "reason": "TIMEOUT", "exit_code": 0}
    broken = {"phase": Phase.FAILED, "reason": "NonZeroExitCode", "exit_code": 1}
    records, _ = map_run_records(run_objects(j8=killed, j9=broken))
    samples = build_run_samples(records, benchmarks(), "sm-seed")
    assert [s.job_id for s in samples] == [1, 2, 3, 4, 5, 6, 7, 8]  # 9 failed for its own reasons
    first = samples[0]
    assert (first.rule, first.code_hash, first.runtime_s, first.queue_s, first.input_bytes) == (
        "preprocess",
        "code-preprocess",
        20.0,
        3.0,
        1000,
    )
    assert first.ended == (T0.timestamp() + 23) and first.run_id == "sm-seed"
    assert first.max_rss_mib is not None and round(first.max_rss_mib, 2) == 2.97  # from the benchmark file
    assert samples[5].queue_s == 24.0  # analysis 6 waited for the one GPU
    assert (samples[7].succeeded, samples[7].limit_failure) == (False, "time")
    assert all(s.requested_minutes is None for s in samples)  # the seed's rules declare no runtime


def test_steps_without_notes_or_that_never_ran_are_left_out() -> None:
    plan = seed_plan()
    bare = [finished_step(plan, e, *SEED_RAN[e.jobid]) for e in SEED]  # an older plugin's steps
    records, _ = map_run_records(bare)
    assert build_run_samples(records, {}, "sm-seed") == []
    pending = [finished_step(plan, SEED[0], 0, None, None, history=notes(1))]
    assert build_run_samples(map_run_records(pending)[0], {}, "sm-seed") == []


def test_the_store_is_appended_and_read_back_with_snakemakes_records(tmp_path: Path) -> None:
    shutil.copytree(DATA / "metadata", tmp_path / ".snakemake" / "metadata")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("x" * 8893)  # b.txt is gone: its input size is unknown
    history = RunHistory.read(str(tmp_path), "alice", right_size=False)
    assert history.from_snakemake == len(history.samples) == 6  # one per job: make, count, burn of a and b
    by_rule = {(s.rule, s.input_bytes) for s in history.samples}
    assert ("count", 8893) in by_rule and ("count", None) in by_rule and ("make", None) in by_rule
    records, _ = map_run_records(run_objects())
    count, path = history.record_run(records, "sm-seed", "alice")
    assert count == 9 and path == history_path(str(tmp_path), "alice")
    assert path.endswith(".snakemake/converged/history/alice.jsonl")
    again = read_history(str(tmp_path), "alice")
    assert again.skipped == 0 and len(again.samples) == 9 + again.from_snakemake
    assert again.samples[:9] == history.run_samples
    # the next plan: preprocess ran twice in this run (20 s, 20 s)
    nxt = history.next_estimates(records)
    assert nxt["preprocess"].basis == "history" and nxt["preprocess"].runtime_s == 20.0
    assert nxt["report"].runs == 1 and nxt["report"].runtime_s == 5.0


def test_per_rule_rows_estimate_beside_measure_requested_beside_used() -> None:
    records, _ = map_run_records(run_objects())
    samples = build_run_samples(records, benchmarks(), "sm-seed")
    nxt = {"preprocess": Estimate(20.0, None, "history", runs=6, spread=0.0)}
    rows = {r.rule: r for r in build_rule_rows(records, samples, nxt)}
    pre = rows["preprocess"]
    assert (pre.steps, pre.ran, pre.estimated_s, pre.basis, pre.measured_s, pre.used_s) == (
        2,
        2,
        20.0,
        "history 4 runs ±10%",
        20.0,
        20.0,
    )
    assert pre.used_mem_mib is not None and pre.next_estimate == nxt["preprocess"]
    assert (rows["report"].basis, rows["report"].estimated_s) == (
        "plan",
        60.0,
    )  # no estimate noted: the plan's
    table = render_rule_table(list(rows.values()))
    assert table[0].split()[:3] == ["RULE", "RAN", "ESTIMATE"]
    pre_line = next(line for line in table if line.startswith("preprocess "))
    assert pre_line.split()[:5] == ["preprocess", "2/2", "20s", "history", "4"]
    assert pre_line.endswith("20s history 6 runs ±0%")  # the next plan's
    text = render_run_summary(build_run_summary(records), "sm-seed", rules=list(rows.values()))
    assert "per rule (runtime per step: estimate mean, measured mean; used: the largest):" in text


def test_a_right_sized_request_shows_beside_the_declared_limit() -> None:
    sized = notes(1, declared_minutes=30, declared_mem_mib=4000, sizing=RightSize(2, 512, True, True))
    plan = seed_plan()
    e = SEED[0]
    shape = e.resources.shape.model_copy(update={"runtime_minutes": 2, "mem_mib": 512})
    e = e.__class__(e.level, e.jobid, e.rule, e.wildcards, e.resources.__class__(shape=shape), e.decision)
    obj = finished_step(plan, e, *SEED_RAN[1], history=sized)
    records, _ = map_run_records([obj])
    (row,) = build_rule_rows(records, (), {})
    assert (row.requested_minutes, row.declared_minutes, row.requested_mem_mib, row.declared_mem_mib) == (
        2,
        30,
        512,
        4000,
    )
    line = render_rule_table([row])[1]
    assert "2m (declared 30m)" in line and "512Mi (declared 4000Mi)" in line
    html = build_report(records, run_id="sm-seed", namespace="team-a", generated_at=T0)
    assert "<h2>Per rule</h2>" in html and "2m (declared 30m)" in html
    assert "<td class=n>20s</td><td class=n>20s</td><td class=n>history 4 runs ±10%</td>" in html


def failed_step(reason: str, exit_code: int, sizing: RightSize | None) -> dict[str, Any]:
    plan = seed_plan()
    obj = finished_step(
        plan,
        SEED[0],
        *SEED_RAN[1],
        history=notes(1, sizing=sizing),
        phase=Phase.FAILED,
        reason=reason,
        exit_code=exit_code,
    )
    return obj


def test_a_step_killed_at_a_learnt_limit_is_retried_once_at_the_declared_limits(tmp_path: Path) -> None:
    history = RunHistory(str(tmp_path), [])
    timeout = failed_step("TIMEOUT", 0, RightSize(2, None, True, False))
    why = history.retry_reason(1, timeout)
    assert why == "it exceeded its learnt time request (2 min, reason TIMEOUT)"
    assert history.declared_only == {1}
    assert history.retry_reason(1, timeout) is None  # once
    assert history.retry_reason(2, failed_step("TIMEOUT", 0, None)) is None  # not right-sized
    assert history.retry_reason(3, failed_step("TIMEOUT", 0, RightSize(30, 256, False, True))) is None
    oom = failed_step("BackoffLimitExceeded", 137, RightSize(30, 256, False, True))
    assert (
        history.retry_reason(4, oom)
        == "it exceeded its learnt memory request (256 MiB, reason BackoffLimitExceeded)"
    )
    assert history.retry_reason(5, None) is None


def test_the_typical_runtime_is_the_median_of_measured_steps() -> None:
    samples = [
        RunSample("a", "-", 10, 1),
        RunSample("a", "-", 30, 2),
        RunSample("a", "-", 500, 3, source="snakemake"),
        RunSample("a", "-", 900, 4, succeeded=False),
        RunSample("b", "-", 20, 5),
    ]
    assert RunHistory("/nowhere", samples).typical_runtime() == 20
    assert RunHistory("/nowhere", []).typical_runtime() is None
    assert build_history_lines([]) == ""


def test_right_sizing_is_a_setting_the_site_can_default() -> None:
    from snakemake_executor_plugin_converged import ExecutorSettings
    from snakemake_executor_plugin_converged.site import merge_site_defaults, parse_site_defaults

    unset = vars(ExecutorSettings())
    assert parse_site_defaults({"data": {"rightSize": "true"}}).right_size is True
    assert parse_site_defaults({"data": {"rightSize": "no"}}).right_size is False
    assert parse_site_defaults({"data": {"rightSize": "maybe"}}).right_size is None
    site = parse_site_defaults({"data": {"rightSize": "yes"}})
    assert merge_site_defaults(ExecutorSettings(), site, unset=unset).right_size is True
    assert not merge_site_defaults(ExecutorSettings(), parse_site_defaults(None), unset=unset).right_size


def test_the_retry_at_declared_limits_is_named_apart() -> None:
    from snakemake_executor_plugin_converged.naming import build_step_name

    assert build_step_name("sm-1", "map", 7) == "sm-1-map-7"
    assert build_step_name("sm-1", "map", 7, declared_retry=True) == "sm-1-map-7-d"
    assert build_step_name("sm-1", "map", 7, 2, declared_retry=True) == "sm-1-map-7-a2-d"


def test_start_up_per_backend_and_the_queued_work_are_learnt() -> None:
    from converged_bridge.routing import SiteWeights

    records, _ = map_run_records(run_objects())
    samples = build_run_samples(records, {}, "sm-seed")
    by_job = {s.job_id: s for s in samples}
    # postprocess 3 was created at 25 s, 1 s after the last end before it (preprocess 2's), started at 28 s
    assert (by_job[3].dispatch_s, by_job[3].queue_s, by_job[3].backend) == (1.0, 3.0, "slurm")
    assert by_job[1].dispatch_s is None  # the first burst: nothing ended before it
    weights = RunHistory("/nowhere", samples).learnt_weights(SiteWeights())
    # Slurm steps' gaps (dispatch + queue): 3, 4 (the first burst), 4, 5, 4, 26 (the GPU), 5, 5 -> median 4.5
    assert weights.slurm_startup_seconds == 4.5
    assert weights.kueue_startup_seconds == SiteWeights().kueue_startup_seconds  # one Kueue step: not enough
    assert weights.mean_runtime_seconds == 20.0
    assert RunHistory("/nowhere", []).learnt_weights(SiteWeights()) == SiteWeights()
