"""The plan learns from past runs (issue 26), on the site as alice with no converged flags: the second run
of a workflow is planned from the first (its steps' runtimes, not the declared limits), the store grows
by one line per step, and with `--converged-right-size` a step killed at its learnt time request is run
once more at the declared limit and succeeds.

Alice's snakemake is the site's; the plugin and bridge are this checkout's (copied where she can read
them, first on her PYTHONPATH), so these tests check the code under test, not the installed wheel.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, kubectl

pytestmark = pytest.mark.integration

USER = "alice"
SNAKEFILE = """
rule all:
    input: "b.txt"

rule nap:
    output: "a.txt"
    params: seconds=config.get("nap", 1)
    resources: runtime=5, mem_mb=100, converged_backend="slurm"
    shell: "sleep {params.seconds}; echo slept > {output}"

rule after:
    input: "a.txt"
    output: "b.txt"
    resources: runtime=5, mem_mb=100, converged_backend="slurm"
    shell: "cat {input} > {output}"
"""


def checkout_code() -> Path:
    dest = Path("/tmp") / f"converged-code-{uuid.uuid4().hex[:8]}"
    for top, package in (("bridge", "converged_bridge"), ("plugin", "snakemake_executor_plugin_converged")):
        shutil.copytree(ROOT / top / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def snakemake(workdir: Path, code: Path, args: str) -> str:
    command = f"PYTHONPATH={shlex.quote(str(code))} snakemake --executor converged -j 2 --forceall {args}"
    cp = subprocess.run(
        ["runuser", "-l", USER, "-c", f"cd {shlex.quote(str(workdir))} && {command}"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = cp.stdout + cp.stderr
    assert cp.returncode == 0, output[-6000:]
    return output


def steps(env: dict[str, str], output: str) -> dict[str, dict[str, Any]]:
    (run_id,) = {
        line.split("run ")[1].split()[0] for line in output.splitlines() if "converged: run sm-" in line
    }
    out = kubectl(env, "get", "wfs", "-n", USER, "-l", f"converged.dev/run={run_id}", "-o", "json")
    return {o["metadata"]["name"].removeprefix(run_id + "-"): o for o in json.loads(out)["items"]}


def history_notes(step: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(step["metadata"]["annotations"]["converged.dev/history"]))


def test_the_second_run_learns_and_a_learnt_limit_is_retried_once(cluster_env: dict[str, str]) -> None:
    env = cluster_env
    base = Path(env["CONVERGED_SHARED_DIR"]) / "users" / USER
    workdir = base / f"history-{uuid.uuid4().hex[:8]}"
    subprocess.run(["runuser", "-u", USER, "--", "mkdir", str(workdir)], check=True)
    (workdir / "Snakefile").write_text(SNAKEFILE)
    code = checkout_code()

    first = steps(env, snakemake(workdir, code, ""))
    assert {history_notes(s)["est"]["basis"] for s in first.values()} == {"declared"}
    store = workdir / ".snakemake" / "converged" / "history" / f"{USER}.jsonl"
    assert len(store.read_text().splitlines()) == 2

    output = snakemake(workdir, code, "")
    second = steps(env, output)
    assert {history_notes(s)["est"]["basis"] for s in second.values()} == {"history"}
    assert {history_notes(s)["est"]["runs"] for s in second.values()} == {1}
    assert "per rule (runtime per step" in output and "history 1 run" in output
    assert len(store.read_text().splitlines()) == 4

    # the nap now lasts 240 s: its learnt request (2 min from seconds-long runs) is too short, the declared
    # 5 min is enough (Slurm checks time limits about every 30 s: 240 s is well past the 2 min)
    output = snakemake(workdir, code, "--converged-right-size --config nap=240")
    third = steps(env, output)
    killed = next(s for name, s in third.items() if name.startswith("nap-") and not name.endswith("-d"))
    retried = next(s for name, s in third.items() if name.startswith("nap-") and name.endswith("-d"))
    assert killed["spec"]["resources"]["runtimeMinutes"] < 5
    assert (killed["status"]["phase"], killed["status"]["reason"]) == ("Failed", "TIMEOUT")
    assert history_notes(killed)["sized"]["t"] is True
    assert "exceeded its learnt time request" in output and "once more with the declared limits" in output
    assert retried["spec"]["resources"]["runtimeMinutes"] == 5 and retried["status"]["phase"] == "Succeeded"
    assert history_notes(retried)["retry"] is True
    assert (workdir / "b.txt").read_text() == "slept\n"
