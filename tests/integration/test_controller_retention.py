"""Retention (issue 18): a finished run's WorkflowSteps are deleted once its retention is over, through
the finalizer like any deletion; a run still going, or one that asks for longer, is kept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import TEST_LABELS, ControllerProcess, eventually, kubectl
from tests.integration.test_controller_slurm import TERMINAL, create, step_manifest, unique, wait_phase

pytestmark = pytest.mark.integration

NS = "team-a"
ONLY_HERE = "converged.dev/retention-test"  # this module's controller sees this module's steps only


@pytest.fixture(scope="module")
def retaining_controller(
    slurm_identities: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProcess]:
    proc = ControllerProcess(
        slurm_identities,
        tmp_path_factory.mktemp("retention") / "controller.log",
        extra_args=(
            f"--label-selector=converged.dev/controller=tests,{ONLY_HERE}=yes",
            "--finished-run-ttl=3",
            "--retention-interval=1",
        ),
    )
    proc.start()
    yield proc
    proc.stop()


def run_step(env: dict[str, str], run: str, workdir: Path, command: list[str], **spec: Any) -> str:
    name = unique(run)
    manifest = step_manifest(name, NS, command, workdir, **spec)
    manifest["metadata"]["labels"] = {**TEST_LABELS, ONLY_HERE: "yes", "converged.dev/run": run}
    create(env, manifest)
    return name


def names_of(env: dict[str, str], run: str) -> set[str]:
    out = kubectl(env, "get", "wfs", "-n", NS, "-l", f"converged.dev/run={run}", "-o", "json")
    return {o["metadata"]["name"] for o in json.loads(out)["items"]}


def test_finished_runs_go_after_their_retention_and_others_stay(
    retaining_controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env = slurm_identities
    short, kept, going = unique("ret-short"), unique("ret-kept"), unique("ret-going")
    finished = [run_step(env, short, workdir, ["true"]) for _ in range(2)]
    asks_longer = run_step(env, kept, workdir, ["true"], ttlSecondsAfterFinished=3600)
    done_early = run_step(env, going, workdir, ["true"])
    still_running = run_step(env, going, workdir, ["sleep", "40"])
    for name in [*finished, asks_longer, done_early]:
        wait_phase(env, NS, name, TERMINAL)

    # the finished run goes (its steps past the finalizer), 3 s after its last step ended
    eventually("the finished run's steps deleted", lambda: names_of(env, short) == set(), timeout=60)
    # the run that asked for an hour, and the run with a step still running, stay
    assert names_of(env, kept) == {asks_longer}
    assert names_of(env, going) == {done_early, still_running}
    log = retaining_controller.log.read_text()
    assert f"run {NS}/{short} finished at" in log and "deleted its 2 steps" in log
    kubectl(env, "delete", "wfs", "-n", NS, still_running, asks_longer, "--wait=false")
    eventually(
        "the rest deleted through the finalizer",
        lambda: names_of(env, kept) == set() and still_running not in names_of(env, going),
        timeout=60,
    )
