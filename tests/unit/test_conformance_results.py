"""The conformance suite compares a run's results as snakemake's own tests do (tests/common.py run())."""

from __future__ import annotations

from pathlib import Path

from tests.conformance.results import compare_results, expected_files
from tests.conformance.runner import summarize_log
from tests.conformance.sdist import find_workflows


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_files_compared_are_those_snakemakes_glob_finds(tmp_path: Path) -> None:
    expected = tmp_path / "wf (with parenthese's)" / "expected-results"
    for name in ("a.txt", "sub/b.txt", "c_WIN", ".gitignore", "sub/.hidden", ".dir/d.txt"):
        write(expected / name, "x\n")
    (expected / "empty-dir").mkdir()
    assert expected_files(expected) == ["a.txt", "sub/b.txt"]


def test_contents_match_with_surrounding_whitespace_stripped(tmp_path: Path) -> None:
    expected, run = tmp_path / "expected-results", tmp_path / "run"
    write(expected / "a.txt", "hello\n")
    write(expected / "sub/b.txt", "one\ntwo\n")
    write(run / "a.txt", "  hello\n\n")
    write(run / "sub/b.txt", "one\ntwo")
    assert compare_results(expected, run) == []
    write(run / "sub/b.txt", "one\n two")
    (run / "a.txt").unlink()
    assert compare_results(expected, run) == [
        "expected file 'a.txt' not produced",
        "wrong result produced for file 'sub/b.txt'",
    ]


def test_workflows_are_folders_with_a_snakefile_and_expected_results(tmp_path: Path) -> None:
    for name in ("test01", "test_path with spaces", "test_no_results", "helpers"):
        write(tmp_path / name / "Snakefile", "")
    for name in ("test01", "test_path with spaces", "helpers"):
        (tmp_path / name / "expected-results").mkdir()
    assert [p.name for p in find_workflows(tmp_path)] == ["test01", "test_path with spaces"]


def test_a_failed_runs_reason_is_its_first_error_lines(tmp_path: Path) -> None:
    log = tmp_path / "log"
    write(log, "Building DAG of jobs...\nMissingOutputException in rule a:\nJob 1 completed...\nb\n")
    assert summarize_log(log) == ["MissingOutputException in rule a:"]
    write(log, "one\ntwo\n\nthree\nfour\n")
    assert summarize_log(log) == ["two", "three", "four"]
