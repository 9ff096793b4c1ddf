"""Estimates from a rule's past runs, declared limits as the fallback; right-sized requests; the one
retry at the declared limits."""

from __future__ import annotations

import pytest

from converged_bridge.history import (
    Declared,
    Estimate,
    RightSize,
    RunSample,
    StepHistoryNotes,
    build_history_annotations,
    classify_limit_failure,
    estimate_step,
    fit_input_line,
    parse_history_annotations,
    percentile,
    plan_declared_retry,
    plan_right_size,
    select_samples,
)

DECLARED = Declared(runtime_s=600.0, mem_mib=4000.0)


def runs(*runtimes: float, rule: str = "map", code: str = "c1", **extra: object) -> list[RunSample]:
    return [RunSample(rule, code, r, ended=float(i), **extra) for i, r in enumerate(runtimes)]  # type: ignore[arg-type]


def test_without_history_the_declared_limits_are_the_estimate() -> None:
    e = estimate_step([], DECLARED)
    assert (e.runtime_s, e.mem_mib, e.basis, e.runs, e.spread, e.mem_basis) == (
        600.0,
        4000.0,
        "declared",
        0,
        None,
        "declared",
    )
    assert e.describe() == "declared" and e.short() == "declared"


def test_the_mean_of_the_last_two_runs_with_the_spread_of_the_recent_ones() -> None:
    e = estimate_step(runs(100, 20, 30), DECLARED)
    assert e.basis == "history" and e.runs == 3
    assert e.runtime_s == 25.0  # (20 + 30) / 2: the oldest run no longer counts
    assert e.spread == pytest.approx(35.59 / 50, abs=1e-3)  # population stdev over mean of 100, 20, 30
    assert e.mem_mib == 4000.0 and e.mem_basis == "declared"  # no run measured memory
    assert e.describe() == "history 3 runs ±71%" and e.short() == "history(3,±71%)"
    one = estimate_step(runs(42), DECLARED)
    assert (one.runtime_s, one.spread, one.describe()) == (42, None, "history 1 run")


def test_the_peak_memory_of_the_runs_that_measured_it() -> None:
    history = [*runs(10, max_rss_mib=300.0), *runs(10, max_rss_mib=450.0), *runs(10)]
    e = estimate_step(history, DECLARED)
    assert (e.mem_mib, e.mem_basis) == (450.0, "history")


def test_runtime_scales_with_input_size_when_the_runs_lie_on_a_line() -> None:
    history = [
        RunSample("map", "c1", 10 + 2e-6 * size, ended=i, input_bytes=size)
        for i, size in enumerate([1_000_000, 5_000_000, 2_000_000, 8_000_000])
    ]
    e = estimate_step(history, DECLARED, input_bytes=20_000_000)
    assert e.scaled and e.runtime_s == pytest.approx(50.0)
    assert e.short() == "history(4,±0%,size)"
    # the same runs without an input size for the step: the last two averaged
    assert estimate_step(history, DECLARED).runtime_s == pytest.approx((14 + 26) / 2)


def test_no_line_when_runtime_does_not_follow_input_size() -> None:
    scattered = [
        RunSample("map", "c1", r, ended=i, input_bytes=size)
        for i, (size, r) in enumerate([(1, 50.0), (2, 10.0), (3, 60.0), (4, 12.0)])
    ]
    assert fit_input_line(scattered) is None
    one_size = [RunSample("map", "c1", r, ended=i, input_bytes=7) for i, r in enumerate([1.0, 2.0, 3.0])]
    assert fit_input_line(one_size) is None
    falling = [RunSample("map", "c1", 10.0 - i, ended=i, input_bytes=i) for i in range(4)]
    assert fit_input_line(falling) is None


def test_samples_of_the_rule_and_its_code_only_measured_steps_first() -> None:
    ours = runs(10, 11)
    changed = runs(99, code="c2")
    theirs = [RunSample("map", "c1", 300, ended=5, source="snakemake")]
    failed = [RunSample("map", "c1", 120, ended=9, succeeded=False, limit_failure="time")]
    other = runs(5, rule="reduce")
    assert select_samples([*ours, *changed, *theirs, *failed, *other], "map", "c1") == ours
    assert (
        select_samples([*theirs, *changed], "map", "c1") == theirs
    )  # snakemake's when there is nothing else
    assert select_samples(runs(*range(1, 30)), "map", "c1")[0].runtime_s == 10  # the last 20


def test_percentile_interpolates() -> None:
    assert percentile([10, 20, 30, 40, 50], 0.95) == pytest.approx(48)
    assert percentile([7], 0.95) == 7


def test_right_sized_requests_are_learnt_with_a_margin_and_never_above_the_limit() -> None:
    history = [*runs(100, 110, 120, max_rss_mib=500.0)]
    e = estimate_step(history, DECLARED)
    sized = plan_right_size(history, e, declared_minutes=60, declared_mem_mib=4000)
    # 95th percentile 119 s x 1.5 + 60 s = 238.5 s -> 4 min; 500 MiB x 1.5 + 64 = 814 -> 832 MiB (64 steps)
    assert sized == RightSize(runtime_minutes=4, mem_mib=832, runtime_learnt=True, mem_learnt=True)
    assert sized.learnt
    tight = plan_right_size(history, e, declared_minutes=3, declared_mem_mib=800)
    assert tight == RightSize(3, 800, False, False)  # the learnt value would be above the limit
    undeclared = plan_right_size(history, e, declared_minutes=None, declared_mem_mib=None)
    assert undeclared == RightSize(None, None, False, False)  # nothing declared: nothing to shrink
    few = runs(100, max_rss_mib=500.0)
    assert not plan_right_size(few, estimate_step(few, DECLARED), 60, 4000).learnt  # one run is not enough


def test_right_size_by_input_size_widens_by_the_spread() -> None:
    e = Estimate(runtime_s=300.0, mem_mib=None, basis="history", runs=5, spread=0.2, scaled=True)
    sized = plan_right_size(runs(1, 2, 3, 4, 5), e, declared_minutes=60, declared_mem_mib=None)
    assert sized.runtime_minutes == 10  # 300 s x (1 + 0.2 spread) x 1.5 + 60 s = 600 s
    assert sized.runtime_learnt and not sized.mem_learnt


@pytest.mark.parametrize(
    ("reason", "exit_code", "mem_learnt", "kind"),
    [
        ("TIMEOUT", None, False, "time"),  # Slurm
        ("DeadlineExceeded", None, False, "time"),  # a Kubernetes Job's activeDeadlineSeconds
        ("OUT_OF_MEMORY", None, False, "memory"),  # Slurm
        ("OOMKilled", 137, False, "memory"),
        ("BackoffLimitExceeded", 137, True, "memory"),  # a pod killed by the OOM killer, memory learnt
        ("BackoffLimitExceeded", 137, False, None),  # killed, but not at a learnt memory request
        ("NonZeroExitCode", 1, True, None),
        (None, None, True, None),
    ],
)
def test_which_limit_killed_a_step(
    reason: str | None, exit_code: int | None, mem_learnt: bool, kind: str | None
) -> None:
    assert classify_limit_failure(reason, exit_code, mem_learnt) == kind


def test_a_step_is_retried_once_and_only_at_a_learnt_limit() -> None:
    assert plan_declared_retry("time", runtime_learnt=True, mem_learnt=False, already_retried=False)
    assert not plan_declared_retry("time", runtime_learnt=True, mem_learnt=False, already_retried=True)
    assert not plan_declared_retry("time", runtime_learnt=False, mem_learnt=True, already_retried=False)
    assert plan_declared_retry("memory", runtime_learnt=False, mem_learnt=True, already_retried=False)
    assert not plan_declared_retry(None, runtime_learnt=True, mem_learnt=True, already_retried=False)


def test_history_notes_round_trip_through_the_annotation() -> None:
    notes = StepHistoryNotes(
        code_hash="0123456789ab",
        input_bytes=38893,
        estimate=Estimate(25.04, 450.0, "history", runs=3, spread=0.7117, scaled=False, mem_basis="history"),
        declared_minutes=60,
        declared_mem_mib=4000,
        sizing=RightSize(4, 832, True, True),
        benchmark="bench/b.count.tsv",
        declared_retry=True,
    )
    annotations = build_history_annotations(notes)
    assert list(annotations) == ["converged.dev/history"] and len(annotations["converged.dev/history"]) < 400
    back = parse_history_annotations(annotations)
    assert back is not None and back.estimate is not None
    assert back.estimate.runtime_s == 25.0 and back.estimate.spread == 0.712  # rounded on the wire
    assert back == StepHistoryNotes(**{**notes.__dict__, "estimate": back.estimate})
    assert parse_history_annotations({}) is None
    assert parse_history_annotations({"converged.dev/history": "{broken"}) is None
    bare = parse_history_annotations({"converged.dev/history": '{"est": {"s": -1}, "in": "x"}'})
    assert bare == StepHistoryNotes()


def test_a_fanned_out_rule_is_estimated_from_all_its_steps_of_the_last_two_runs() -> None:
    def run(run_id: str, start: int, *runtimes: float) -> list[RunSample]:
        return [
            RunSample("map", "c1", r, ended=float(start + i), run_id=run_id) for i, r in enumerate(runtimes)
        ]

    # the tail of a fan-out runs alone and fast: its last two steps are not the rule's typical step
    history = [
        *run("sm-1", 0, 30, 30, 30),
        *run("sm-2", 10, 8, 8, 8, 8, 2, 2),
        *run("sm-3", 20, 9, 9, 9, 9, 3, 3),
    ]
    assert estimate_step(history, DECLARED).runtime_s == pytest.approx(78 / 12)  # runs sm-2 and sm-3
    theirs = [RunSample("map", "c1", r, ended=float(i), source="snakemake") for i, r in enumerate([5, 7, 9])]
    assert estimate_step(theirs, DECLARED).runtime_s == 8  # no run ids: the last two records
