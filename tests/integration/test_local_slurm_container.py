"""Acceptance of the step image on the Slurm side, under both runtimes the local cluster has: an sbatch
job on partition `cpu` runs the image's SIF through Apptainer (the SlurmCluster's runtime) and its
unpacked directory through charliecloud, as root and as an unprivileged user, writing into the shared
directory."""

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
    "'apptainer': os.environ.get('APPTAINER_CONTAINER'), 'charliecloud': os.path.exists('/ch/environment'), "
    "'path': os.environ['PATH'], 'slurm_job': os.environ.get('SLURM_JOB_ID')}, open(sys.argv[1], 'w'))"
)


def launcher(runtime: str, env: dict[str, str], shared: Path) -> list[str]:
    if runtime == "apptainer":
        # --cleanenv: the job's SLURM_JOB_ID reaches the container only as APPTAINERENV_ (set below)
        return [
            "apptainer",
            "exec",
            "--no-eval",
            "--cleanenv",
            "--bind",
            str(shared),
            env["CONVERGED_STEP_IMAGE_SIF"],
        ]
    # ch-run --set-env: the image's own environment (/ch/environment): PATH with /usr/local/bin
    return ["ch-run", "--set-env", f"--bind={shared}", env["CONVERGED_STEP_IMAGE_DIR"], "--"]


def batch_script(runtime: str, env: dict[str, str], shared: Path, output: Path) -> str:
    argv = [*launcher(runtime, env, shared), "python3", "-c", STEP_SCRIPT, str(output)]
    # ch-run wants $USER, which a job submitted for another user may not carry
    return (
        "#!/bin/bash\nset -eu\n"
        'export USER="${USER:-$(id -un)}" APPTAINERENV_SLURM_JOB_ID="$SLURM_JOB_ID"\n'
        f"cd /tmp\n{shlex.join(argv)}\n"
    )


@pytest.mark.parametrize("runtime", ["apptainer", "charliecloud"])
@pytest.mark.parametrize("user", ["root", "nobody"])
def test_sbatch_job_runs_the_step_image(cluster_env: dict[str, str], user: str, runtime: str) -> None:
    shared = Path(cluster_env["CONVERGED_SHARED_DIR"])
    name = f"slurm-{runtime}-{uuid.uuid4().hex[:8]}"
    output, log = shared / f"{name}.json", shared / f"{name}.log"
    script = shared / f"{name}.sh"
    script.write_text(batch_script(runtime, cluster_env, shared, output))
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
        if runtime == "apptainer":
            assert ran["apptainer"] == cluster_env["CONVERGED_STEP_IMAGE_SIF"]  # inside the SIF
        else:
            assert ran["charliecloud"] is True and not Path("/ch/environment").exists()
            assert "/usr/local/bin" in ran["path"].split(":")
        assert ran["uid"] == (0 if user == "root" else 65534)
    finally:
        for f in (output, log, script):
            f.unlink(missing_ok=True)
