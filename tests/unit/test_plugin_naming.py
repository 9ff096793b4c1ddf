"""Names and labels of a run's WorkflowSteps: deterministic and always valid."""

from __future__ import annotations

import re

import pytest

from snakemake_executor_plugin_converged.naming import build_rule_label, build_run_id, build_step_name

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def test_run_id() -> None:
    assert build_run_id("1A2b3c4d") == "sm-1a2b3c4d"
    assert build_run_id("sm-nightly") == "sm-nightly"
    assert build_run_id("My Run/2026") == "sm-my-run-2026"
    with pytest.raises(ValueError, match="gives no valid name"):
        build_run_id("---")


def test_plain_rule_names_read_as_is() -> None:
    assert build_step_name("sm-1234abcd", "align", 7) == "sm-1234abcd-align-7"
    assert build_step_name("sm-1234abcd", "align", 7, attempt=2) == "sm-1234abcd-align-7-a2"


@pytest.mark.parametrize(
    "rule",
    [
        "bwa_map",
        "BWA",
        "x" * 200,
        "_",
        "rule with spaces",
        "ünïcode",
        "a-",
        "group-5f1c0b9e-aaaa-bbbb-cccc-dddd",
    ],
)
def test_any_rule_gives_a_valid_deterministic_name_and_label(rule: str) -> None:
    name = build_step_name("sm-1234abcd", rule, 123456, attempt=3)
    assert DNS_LABEL.fullmatch(name) and len(name) <= 63, name
    assert name == build_step_name("sm-1234abcd", rule, 123456, attempt=3)
    label = build_rule_label(rule)
    assert LABEL_VALUE.fullmatch(label) and len(label) <= 63, label


def test_rules_that_slug_alike_get_different_names() -> None:
    assert build_step_name("sm-1", "bwa_map", 1) != build_step_name("sm-1", "bwa-map", 1)
    assert build_step_name("sm-1", "x" * 100 + "a", 1) != build_step_name("sm-1", "x" * 100 + "b", 1)
    assert build_rule_label("bwa map") != build_rule_label("bwa/map")
    assert build_rule_label("bwa_map") == "bwa_map"
