"""The history's sources: snakemake's own records (metadata per output file, benchmark files, captured
from a real run under tests/data/history) and our store's JSON lines."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from converged_bridge.history import (
    RunSample,
    build_code_hash,
    build_history_lines,
    dedupe_snakemake_records,
    map_snakemake_record,
    parse_benchmark,
    parse_history_lines,
    parse_snakemake_record,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "history"


def record_of(output: str) -> str:
    name = base64.urlsafe_b64encode(output.encode()).decode()
    return (DATA / "metadata" / name).read_text()


def test_a_metadata_record_gives_rule_code_inputs_and_times() -> None:
    record = parse_snakemake_record(record_of("out/b.count"))
    assert record is not None
    assert (record.rule, record.code, record.inputs) == (
        "count",
        "wc -l {input} > {output}; sleep 0.2",
        ("data/b.txt",),
    )
    sample = map_snakemake_record(record, input_bytes=38893)
    assert sample.source == "snakemake" and sample.input_bytes == 38893
    assert sample.code_hash == build_code_hash("wc -l {input} > {output}; sleep 0.2")
    assert 0.2 <= sample.runtime_s < 1.0  # `sleep 0.2` in the rule: submission to the output's last write
    assert sample.ended == record.endtime


def test_every_captured_record_parses_and_rules_keep_their_code_apart() -> None:
    records = [parse_snakemake_record(p.read_text()) for p in sorted((DATA / "metadata").iterdir())]
    assert all(r is not None for r in records)
    hashes = {r.rule: build_code_hash(r.code) for r in records if r is not None}
    assert sorted(hashes) == ["burn", "count", "make"]
    assert len(set(hashes.values())) == 3


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"rule": "count", "starttime": 1.0}',  # no endtime
        '{"rule": "count", "starttime": 1.0, "endtime": 2.0, "incomplete": true}',
        '{"rule": 3, "starttime": 1.0, "endtime": 2.0}',
    ],
)
def test_incomplete_or_malformed_records_are_left_out(text: str) -> None:
    assert parse_snakemake_record(text) is None


def test_a_job_with_several_outputs_counts_once() -> None:
    one = parse_snakemake_record(record_of("data/a.txt"))
    assert one is not None
    twin = one.__class__(one.rule, one.code, one.inputs, one.starttime, one.endtime + 0.5)
    assert dedupe_snakemake_records([one, twin]) == [twin]


def test_a_benchmark_file_gives_wall_cpu_and_peak_memory_in_mib() -> None:
    figures = parse_benchmark((DATA / "benchmarks" / "b.count.tsv").read_text())
    assert figures is not None
    assert figures.wall_s == pytest.approx(0.21)
    assert figures.max_rss_mib == pytest.approx(3.11 * 1e6 / 2**20)  # snakemake writes MB
    assert figures.cpu_s == 0.0
    assert parse_benchmark("s\th:m:s\tmax_rss\n") is None
    na = parse_benchmark("s\tmax_rss\tcpu_time\n1.5\tNA\t-\n")
    assert na is not None and (na.wall_s, na.max_rss_mib, na.cpu_s) == (1.5, None, None)


def test_the_store_round_trips_and_skips_what_it_cannot_read() -> None:
    samples = [
        RunSample("count", "abc", 12.5, 1000.0, input_bytes=38893, queue_s=2.0, run_id="sm-1", job_id=3),
        RunSample("map", "def", 60.0, 1001.0, succeeded=False, limit_failure="time", requested_minutes=2),
    ]
    text = build_history_lines(samples)
    assert text.count("\n") == 2 and '"v":1' in text.splitlines()[0]
    damaged = text + '{"v":1,"rule":"x"\n' + '{"v":2,"rule":"x","code_hash":"-","runtime_s":1,"ended":1}\n'
    damaged += '{"v":1,"rule":"x","code_hash":"-","runtime_s":-1,"ended":1}\n\n'
    damaged += '{"v":1,"rule":"x","code_hash":"-","runtime_s":1,"ended":1,"newer_field":true}\n'
    parsed, skipped = parse_history_lines(damaged)
    assert parsed[:2] == samples
    assert parsed[2] == RunSample("x", "-", 1, 1)  # a newer writer's field is ignored
    assert skipped == 3
