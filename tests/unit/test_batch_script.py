"""build_batch_script: golden files, real execution under bash, and rejection of unsafe input.

Goldens live in tests/data/batch_scripts/; `UPDATE_GOLDENS=1 pytest tests/unit/test_batch_script.py`
rewrites them (review the diff before keeping it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from converged_bridge.api.slurmcluster import ContainerRuntime, SlurmClusterSpec
from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.errors import InvalidStep
from converged_bridge.slurm.batch_script import (
    build_batch_options,
    build_batch_script,
    build_job_name,
    build_sbatch_directives,
    build_secret_env_file,
)

GOLDENS = Path(__file__).resolve().parents[1] / "data" / "batch_scripts"
UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
LOG_DIR = "/shared/converged/logs"
SECRET_FILE = "/shared/converged/secrets/0f8fad5b.env"
HOSTILE_RULE = "bwa map\"; $(rm -rf /) `id` \n|&;<>*?[x] ünïcødé 'q'"
HOSTILE_ARGS = [
    "$(touch pwned)",
    "`touch pwned2`",
    "a\nb",
    "'; touch pwned3; '",
    'say "hi" \\ there',
    "semi;pipe|amp&",
    "*.txt ?[ab]",
    "ünïcødé ✓",
    "",
    "--flag=$HOME",
]


def make_step(**spec: Any) -> WorkflowStep:
    base: dict[str, Any] = {
        "workflow": {"runId": "run-1", "rule": "bwa_map", "jobId": 7, "wildcards": {"sample": "A"}},
        "backend": "slurm",
        "slurm": {"cluster": "hpc"},
        "image": "docker://python:3.12-slim",
        "command": ["python3", "-c", "print('hello')"],
        "workingDir": "/shared/project",
        "resources": {"cpus": 2, "memMiB": 4096, "runtimeMinutes": 30},
    }
    base.update(spec)
    return WorkflowStep.model_validate({"metadata": {"name": "bwa-map-7", "uid": UID}, "spec": base})


def make_cluster(runtime: ContainerRuntime = ContainerRuntime.APPTAINER, **spec: Any) -> SlurmClusterSpec:
    base: dict[str, Any] = {
        "restd": {
            "url": "http://127.0.0.1:6820",
            "tokenSecretRef": {"namespace": "converged", "name": "jwt", "key": "token"},
        },
        "containerRuntime": runtime.value,
        "bindPaths": ["/shared"],
        "defaults": {"partition": "cpu", "account": "lab"},
    }
    base.update(spec)
    return SlurmClusterSpec.model_validate(base)


GOLDEN_CASES: dict[str, tuple[WorkflowStep, SlurmClusterSpec, str | None]] = {
    "plain_cpu": (make_step(), make_cluster(), None),
    "gpu_model": (
        make_step(
            resources={"cpus": 8, "memMiB": 65536, "gpus": 2, "gpuModel": "a100", "runtimeMinutes": 120}
        ),
        make_cluster(),
        None,
    ),
    "gpu_any_model": (make_step(resources={"gpus": 1}), make_cluster(), None),
    "mpi": (
        make_step(resources={"cpus": 1, "memMiB": 2048, "nodes": 2, "tasks": 4, "runtimeMinutes": 10}),
        make_cluster(),
        None,
    ),
    "step_placement_overrides_defaults": (
        make_step(slurm={"cluster": "hpc", "partition": "gpu", "account": "other", "qos": "high"}),
        make_cluster(),
        None,
    ),
    "runtime_singularity": (
        make_step(resources={"gpus": 1}),
        make_cluster(ContainerRuntime.SINGULARITY),
        None,
    ),
    "runtime_charliecloud": (
        make_step(image="/shared/images/python"),
        make_cluster(ContainerRuntime.CHARLIECLOUD),
        None,
    ),
    "runtime_podman": (
        make_step(resources={"gpus": 1}, env=[{"name": "MODE", "value": "fast"}]),
        make_cluster(ContainerRuntime.PODMAN),
        None,
    ),
    "runtime_none": (make_step(image=None, workingDir=None), make_cluster(ContainerRuntime.NONE), None),
    "env_and_secrets": (
        make_step(
            env=[
                {"name": "MODE", "value": "fast and 'loose'"},
                {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            ]
        ),
        make_cluster(),
        SECRET_FILE,
    ),
    "hostile_apptainer": (
        make_step(
            workflow={"runId": "run-1", "rule": HOSTILE_RULE, "jobId": 3, "wildcards": {"s": "$(x)"}},
            command=["sh", "-c", 'echo "$@"', *HOSTILE_ARGS],
            env=[{"name": "EVIL", "value": "$(touch pwned) `id` ;|& \n x"}],
            workingDir="/shared/dir with spaces/$(x)/ü",
        ),
        make_cluster(),
        None,
    ),
    "hostile_none": (
        make_step(
            image=None,
            workflow={"runId": "run-1", "rule": HOSTILE_RULE, "jobId": 3},
            command=["printf", "%s\\n", *HOSTILE_ARGS],
        ),
        make_cluster(ContainerRuntime.NONE),
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_matches_golden(case: str) -> None:
    step, cluster, secret_file = GOLDEN_CASES[case]
    script = build_batch_script(step, cluster, uid=UID, log_dir=LOG_DIR, secret_env_file=secret_file)
    golden = GOLDENS / f"{case}.sh"
    if os.environ.get("UPDATE_GOLDENS") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(script)
    assert golden.exists(), f"no golden {golden}; run with UPDATE_GOLDENS=1 and review it"
    assert script == golden.read_text()


def test_every_golden_has_a_case() -> None:
    assert sorted(p.stem for p in GOLDENS.glob("*.sh")) == sorted(GOLDEN_CASES)


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_script_is_valid_bash(case: str) -> None:
    step, cluster, secret_file = GOLDEN_CASES[case]
    script = build_batch_script(step, cluster, uid=UID, log_dir=LOG_DIR, secret_env_file=secret_file)
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_directives_come_first_and_never_carry_user_text() -> None:
    step, cluster, _ = GOLDEN_CASES["hostile_apptainer"]
    lines = build_batch_script(step, cluster, uid=UID, log_dir=LOG_DIR).splitlines()
    directives = [line for line in lines if line.startswith("#SBATCH")]
    assert lines[1 : 1 + len(directives)] == directives  # sbatch stops reading at the first command
    assert all(line.isascii() and " " not in line.removeprefix("#SBATCH ") for line in directives)
    assert f"#SBATCH --comment=converged:{UID}" in directives
    assert "#SBATCH --export=NONE" in directives


def test_directives_refuse_whitespace_in_hand_built_options() -> None:
    options = build_batch_options(make_step(), make_cluster(), uid=UID, log_dir=LOG_DIR)
    assert build_sbatch_directives(options)[0] == "#SBATCH --job-name=bwa_map-7"
    with pytest.raises(InvalidStep, match="whitespace"):
        build_sbatch_directives(dataclasses.replace(options, qos="normal\n#SBATCH --uid=0"))


def test_job_name_is_safe_deterministic_and_bounded() -> None:
    assert build_job_name(make_step()) == "bwa_map-7"
    hostile = make_step(workflow={"runId": "r", "rule": HOSTILE_RULE, "jobId": 3})
    name = build_job_name(hostile)
    assert name == build_job_name(hostile)
    assert name.endswith("-3")
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    long = make_step(workflow={"runId": "r", "rule": "r" * 256, "jobId": 123456789})
    assert len(build_job_name(long)) == 100
    assert build_job_name(long).endswith("-123456789")


def test_options_for_gpu_mpi_step() -> None:
    step = make_step(
        resources={"cpus": 3, "memMiB": 1000, "gpus": 2, "gpuModel": "a100", "nodes": 2, "tasks": 4},
        slurm={"cluster": "hpc", "qos": "high"},
    )
    options = build_batch_options(step, make_cluster(), uid=UID, log_dir=LOG_DIR + "/")
    assert (options.nodes, options.ntasks, options.cpus_per_task, options.mem_mib) == (2, 4, 3, 1000)
    assert options.gres == "gpu:a100:2"
    assert (options.partition, options.account, options.qos) == ("cpu", "lab", "high")
    assert options.output == options.error == f"{LOG_DIR}/converged-{UID}.log"
    assert options.time_minutes is None


# ---------------------------------------------------------------------------------------------------------
# Execution: the script body really runs under bash; hostile text must arrive verbatim and never run.

DUMP_ARGV = "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd()}))"


def run_script(
    script: str, workdir: Path, path_prefix: Path | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    script_path = workdir.parent / "job.sh"
    script_path.write_text(script)
    path = os.environ["PATH"] if path_prefix is None else f"{path_prefix}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", str(script_path)],
        cwd=workdir.parent,
        env={"PATH": path, "HOME": str(workdir.parent), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def no_pwned_files(*dirs: Path) -> list[Path]:
    return [p for d in dirs for p in d.rglob("pwned*")]


def test_hostile_argv_arrives_verbatim_and_nothing_runs(tmp_path: Path) -> None:
    workdir = tmp_path / "work dir $(touch pwned)"
    workdir.mkdir()
    argv = ["$(touch pwned)", "`touch pwned2`", "a\nb", "'; touch pwned3; '", *HOSTILE_ARGS]
    step = make_step(
        image=None,
        workflow={"runId": "r", "rule": HOSTILE_RULE, "jobId": 1},
        command=[sys.executable, "-c", DUMP_ARGV, *argv],
        workingDir=str(workdir),
    )
    script = build_batch_script(step, make_cluster(ContainerRuntime.NONE), uid=UID, log_dir=LOG_DIR)
    done = run_script(script, workdir)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"argv": argv, "cwd": str(workdir)}
    assert no_pwned_files(tmp_path) == []


def test_env_and_secrets_arrive_verbatim_and_secrets_stay_out_of_the_script(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    plain = "$(touch pwned) `touch pwned2` '\"; touch pwned3 \n ü"
    secret = "s3cr3t '$(touch pwned4)' \"`touch pwned5`\"\nline2 \\ end"
    secret_file = tmp_path / "secret.env"
    secret_file.write_text(build_secret_env_file({"API_TOKEN": secret}))
    secret_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    dump_env = "import json, os; print(json.dumps({k: os.environ[k] for k in ('PLAIN', 'API_TOKEN')}))"
    step = make_step(
        image=None,
        command=[sys.executable, "-c", dump_env],
        workingDir=str(workdir),
        env=[
            {"name": "PLAIN", "value": plain},
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        ],
    )
    script = build_batch_script(
        step, make_cluster(ContainerRuntime.NONE), uid=UID, log_dir=LOG_DIR, secret_env_file=str(secret_file)
    )
    assert "s3cr3t" not in script
    done = run_script(script, workdir)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"PLAIN": plain, "API_TOKEN": secret}
    assert no_pwned_files(tmp_path) == []


def test_missing_secret_fails_the_job_naming_the_variable(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    secret_file = tmp_path / "secret.env"
    secret_file.write_text(build_secret_env_file({}))
    step = make_step(
        image=None,
        command=["true"],
        workingDir=str(workdir),
        env=[{"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
    )
    script = build_batch_script(
        step, make_cluster(ContainerRuntime.NONE), uid=UID, log_dir=LOG_DIR, secret_env_file=str(secret_file)
    )
    done = run_script(script, workdir)
    assert done.returncode != 0
    assert "API_TOKEN" in done.stderr


FAKE_RUNTIME = f"""#!{sys.executable}
import json, os, sys
env = {{k: v for k, v in os.environ.items() if k.endswith("MODE") or k == "PLAIN"}}
print(json.dumps({{"argv": [os.path.basename(sys.argv[0]), *sys.argv[1:]], "env": env}}))
"""


@pytest.mark.parametrize(
    ("runtime", "expected_prefix", "expected_env"),
    [
        (
            ContainerRuntime.APPTAINER,
            [
                "apptainer",
                "--quiet",
                "exec",
                "--no-eval",
                "--cleanenv",
                "--bind",
                "/shared",
                "--bind",
                "{wd}",
                "--pwd",
                "{wd}",
                "img",
            ],
            {"MODE": "$(touch pwned) ;|&", "APPTAINERENV_MODE": "$(touch pwned) ;|&"},
        ),
        (
            ContainerRuntime.SINGULARITY,
            [
                "singularity",
                "--quiet",
                "exec",
                "--no-eval",
                "--cleanenv",
                "--bind",
                "/shared",
                "--bind",
                "{wd}",
                "--pwd",
                "{wd}",
                "img",
            ],
            {"MODE": "$(touch pwned) ;|&", "SINGULARITYENV_MODE": "$(touch pwned) ;|&"},
        ),
        (
            ContainerRuntime.CHARLIECLOUD,
            ["ch-run", "--bind=/shared", "--bind={wd}", "--cd={wd}", "img", "--"],
            {"MODE": "$(touch pwned) ;|&"},
        ),
        (
            ContainerRuntime.PODMAN,
            [
                *("podman", "run", "--rm", "--network=host", "--env", "MODE"),
                *("--volume", "/shared:/shared", "--volume", "{wd}:{wd}", "--workdir", "{wd}", "img"),
            ],
            {"MODE": "$(touch pwned) ;|&"},
        ),
    ],
)
def test_runtime_receives_argv_and_env_verbatim(
    tmp_path: Path, runtime: ContainerRuntime, expected_prefix: list[str], expected_env: dict[str, str]
) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / expected_prefix[0]).write_text(FAKE_RUNTIME)
    (fake_bin / expected_prefix[0]).chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    step = make_step(
        image="img",
        command=["prog", *HOSTILE_ARGS],
        workingDir=str(workdir),
        env=[{"name": "MODE", "value": "$(touch pwned) ;|&"}],
    )
    done = run_script(
        build_batch_script(step, make_cluster(runtime), uid=UID, log_dir=LOG_DIR), workdir, fake_bin
    )
    assert done.returncode == 0, done.stderr
    prefix = [arg.replace("{wd}", str(workdir)) for arg in expected_prefix]
    assert json.loads(done.stdout) == {"argv": [*prefix, "prog", *HOSTILE_ARGS], "env": expected_env}
    assert no_pwned_files(tmp_path) == []


FAKE_MPI_STEP = f"""#!{sys.executable}
import json, os, sys
keep = ("CONVERGED_MPIRUN", "APPTAINERENV_CONVERGED_MPIRUN", "APPTAINERENV_SLURM_NTASKS", "SLURM_NTASKS")
print(json.dumps({{"argv": [os.path.basename(sys.argv[0]), *sys.argv[1:]],
                  "env": {{k: os.environ[k] for k in keep if k in os.environ}}}}))
"""


def test_an_mpi_step_runs_its_command_once_with_a_launcher_for_its_ranks(tmp_path: Path) -> None:
    """The command runs once (snakemake's job, say) and starts the ranks with $CONVERGED_MPIRUN."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "mpi_prog").write_text(FAKE_MPI_STEP)
    (fake_bin / "mpi_prog").chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    step = make_step(
        image=None,
        command=["mpi_prog", *HOSTILE_ARGS],
        workingDir=str(workdir),
        resources={"cpus": 2, "nodes": 2, "tasks": 4},
    )
    script = build_batch_script(step, make_cluster(ContainerRuntime.NONE), uid=UID, log_dir=LOG_DIR)
    done = run_script(script, workdir, fake_bin)
    assert done.returncode == 0, done.stderr
    ran = json.loads(done.stdout)
    assert ran["argv"] == ["mpi_prog", *HOSTILE_ARGS]  # not under srun: once
    mpirun = "srun --mpi=pmix --export=ALL,PMIX_MCA_gds=hash --nodes=2 --ntasks=4 --cpus-per-task=2"
    assert ran["env"] == {"CONVERGED_MPIRUN": mpirun}


def test_in_apptainer_the_launcher_starts_each_rank_in_the_image_with_the_hosts_runtime(
    tmp_path: Path,
) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "apptainer").write_text(FAKE_MPI_STEP)
    (fake_bin / "apptainer").chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    step = make_step(image="/images/step.sif", workingDir=str(workdir), resources={"nodes": 2, "tasks": 2})
    script = build_batch_script(step, make_cluster(ContainerRuntime.APPTAINER), uid=UID, log_dir=LOG_DIR)
    done = run_script(script, workdir, fake_bin, extra_env={"SLURM_NTASKS": "2"})
    assert done.returncode == 0, done.stderr
    env = json.loads(done.stdout)["env"]
    assert env["APPTAINERENV_SLURM_NTASKS"] == "2"  # the allocation, handed through --cleanenv
    words = env["APPTAINERENV_CONVERGED_MPIRUN"].split()
    assert words[:7] == [
        "srun",
        "--mpi=pmix",
        "--export=ALL,PMIX_MCA_gds=hash",
        "--nodes=2",
        "--ntasks=2",
        "--cpus-per-task=1",
        str(fake_bin / "apptainer"),
    ]
    assert words[7:] == [
        "--silent",
        "exec",
        "--no-eval",
        "--bind",
        "/shared",
        "--bind",
        str(workdir),
        "/images/step.sif",  # no --pwd: ranks start where the command called srun
    ]


def test_an_mpi_step_refuses_whitespace_its_launcher_would_split() -> None:
    step = make_step(image="/images/my step.sif", resources={"nodes": 2, "tasks": 2})
    with pytest.raises(InvalidStep, match="whitespace"):
        build_batch_script(step, make_cluster(ContainerRuntime.APPTAINER), uid=UID, log_dir=LOG_DIR)


def test_an_mpi_step_is_refused_on_a_cluster_without_mpi_with_where_to_send_it() -> None:
    step = make_step(resources={"nodes": 2, "tasks": 2})
    with pytest.raises(InvalidStep, match=r"runs no MPI steps.*operator mpijob"):
        build_batch_script(step, make_cluster(mpi=False), uid=UID, log_dir=LOG_DIR)
    one_task = make_step()
    assert "#SBATCH --ntasks=1" in build_batch_script(
        one_task, make_cluster(mpi=False), uid=UID, log_dir=LOG_DIR
    )


def test_exit_code_of_the_command_is_the_jobs(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    step = make_step(image=None, command=["sh", "-c", "exit 42"], workingDir=str(workdir))
    done = run_script(
        build_batch_script(step, make_cluster(ContainerRuntime.NONE), uid=UID, log_dir=LOG_DIR), workdir
    )
    assert done.returncode == 42


def test_a_working_directory_sbatch_cannot_name_gets_its_log_relative_to_it() -> None:
    """snakemake's own `test (with parenthese's)`: --output cannot be quoted, so the log inside the
    working directory is named relative to it (Slurm resolves it against the job's working directory)."""
    workdir = "/shared/test (with parenthese's)"
    script = build_batch_script(
        make_step(workingDir=workdir), make_cluster(), uid=UID, log_dir=f"{workdir}/.converged/logs"
    )
    assert f"#SBATCH --output=.converged/logs/converged-{UID}.log" in script.splitlines()
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    with pytest.raises(InvalidStep, match="inside the step's working directory"):
        build_batch_script(make_step(workingDir=workdir), make_cluster(), uid=UID, log_dir="/logs (x)")
