"""Acceptance of the step image on the Slurm side: an sbatch job on partition `cpu` runs the same
image through charliecloud (`ch-run` on the unpacked directory; Apptainer is not installable here),
as root and as an unprivileged user, and writes into the shared directory."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

# Runs inside the image; argv[1] is the output file in the shared directory.
STEP_SCRIPT = (
    "import json, os, sys, snakemake; "
    "json.dump({'python': sys.executable, 'snakemake': snakemake.__version__, 'uid': os.getuid(), "
    "'image_env': os.path.exists('/ch/environment'), 'path': os.environ['PATH'], "
    "'slurm_job': os.environ.get('SLURM_JOB_ID')}, open(sys.argv[1], 'w'))"
)


def batch_script(image_dir: str, shared: Path, output: Path) -> str:
    argv = [
        "ch-run",
        "--set-env",  # the image's own environment (/ch/environment): PATH with /usr/local/bin
        f"--bind={shared}",
        image_dir,
        "--",
        "python3",
        "-c",
        STEP_SCRIPT,
        str(output),
    ]
    # ch-run wants $USER; a job submitted for another user may not carry it
    return f'#!/bin/bash\nset -eu\nexport USER="${{USER:-$(id -un)}}"\n{shlex.join(argv)}\n'


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_sbatch_job_runs_the_step_image_with_charliecloud(cluster_env: dict[str, str], user: str) -> None:
    assert cluster_env["CONVERGED_SLURM_CONTAINER_RUNTIME"] == "charliecloud"
    shared = Path(cluster_env["CONVERGED_SHARED_DIR"])
    name = f"slurm-step-{uuid.uuid4().hex[:8]}"
    output, log = shared / f"{name}.json", shared / f"{name}.log"
    script = shared / f"{name}.sh"
    script.write_text(batch_script(cluster_env["CONVERGED_STEP_IMAGE_DIR"], shared, output))
    script.chmod(0o755)
    argv = ["sbatch", "--wait", "--parsable", "--partition=cpu", "--time=5", f"--output={log}"]
    if user != "root":
        argv += [f"--uid={user}", "--gid=nogroup", "--chdir=/tmp"]
    env = {**os.environ, "SLURM_CONF": cluster_env["SLURM_CONF"]}
    try:
        # --wait: sbatch returns when the job ends, with the job's exit code; bounded by the timeout
        cp = subprocess.run([*argv, str(script)], capture_output=True, text=True, env=env, timeout=240)
        job_log = log.read_text() if log.exists() else "(no log)"
        assert cp.returncode == 0, f"{cp.stderr}\n{job_log}"
        ran = json.loads(output.read_text())
        assert ran["slurm_job"] == cp.stdout.strip().split(";")[0]
        assert ran["python"] == "/usr/bin/python3"
        assert ran["snakemake"].startswith("9.")
        assert ran["image_env"] is True and not Path("/ch/environment").exists()  # inside the image
        assert "/usr/local/bin" in ran["path"].split(":")
        assert ran["uid"] == (0 if user == "root" else 65534)
    finally:
        for f in (output, log, script):
            f.unlink(missing_ok=True)
