"""A representative part of the conformance suite (`make conformance` runs all of it, see
tests/conformance): snakemake's own test workflows run by alice through `snakemake --executor converged`
on the local site, every step routed to Slurm, then to Kueue, their results compared with snakemake's
expected results as its own tests compare them. Together they exercise log:, benchmark: and shadow:
(test_shadow), temp() of the default target rule (test_issue894) and inside a group job
(test_group_temp), checkpoints (test_checkpoints), group jobs (test_group_jobs) and a resource function
evaluated only just before its job runs (test_lazy_resources). All of them pass with the local executor.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conformance.runner import Outcome, make_user_dir, run_all, user_snakemake_version
from tests.conformance.sdist import default_cache, fetch_snakemake_tests

pytestmark = pytest.mark.integration

USER = "alice"
SUBSET = (
    "test_shadow",
    "test_issue894",
    "test_group_temp",
    "test_checkpoints",
    "test_group_jobs",
    "test_lazy_resources",
)
MODES = ("slurm", "kueue")


@pytest.fixture(scope="module")
def outcomes(cluster_env: dict[str, str]) -> dict[tuple[str, str], Outcome]:
    """Every workflow of SUBSET on both backends, six at a time (the runs mostly wait for their steps)."""
    tests = fetch_snakemake_tests(user_snakemake_version(USER), default_cache())
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    home = Path(cluster_env["CONVERGED_SHARED_DIR"]) / "users" / USER
    base = make_user_dir(home / f"conformance-{stamp}", USER)
    runs = [(tests / name, mode) for mode in MODES for name in SUBSET]
    return {(o.workflow, o.mode): o for o in run_all(runs, base, user=USER, parallel=6)}


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("workflow", SUBSET)
def test_snakemakes_own_workflow_passes_through_converged(
    outcomes: dict[tuple[str, str], Outcome], workflow: str, mode: str
) -> None:
    outcome = outcomes[(workflow, mode)]
    assert outcome.passed, f"{outcome.reason()} (its log: {outcome.log})"
