"""Slurm steps in Apptainer, for real: the step image's SIF runs as the namespace's Slurm user, the
environment arrives verbatim through APPTAINERENV_*, an MPI step starts its ranks on two Slurm nodes
(srun --mpi=pmix from inside the container, each rank in the SIF), LAMMPS runs over them; charliecloud
stays a runtime with a test of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration.conftest import ControllerProcess
from tests.integration.test_controller_slurm import TERMINAL, create, step_manifest, unique, wait_phase

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(
    kube_env: dict[str, str], name: str, command: list[str], workdir: Path, **spec: object
) -> dict[str, object]:
    create(kube_env, step_manifest(name, "team-a", command, workdir, **spec))  # type: ignore[arg-type]
    status: dict[str, object] = wait_phase(kube_env, "team-a", name, TERMINAL, timeout=240)["status"]
    return status


def test_a_step_runs_in_the_sif_as_the_mapped_user(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("sif")
    out = workdir / f"{name}.txt"
    hostile = "$(touch pwned) `id` ;|& \n \\ $HOME"
    status = run(
        env,
        name,
        ["/bin/sh", "-c", f'echo "$APPTAINER_CONTAINER $(id -un)" > {out}; printf %s "$HOSTILE" >> {out}'],
        workdir,
        cluster="converged-apptainer",
        image=env["CONVERGED_SLURM_IMAGE"],
        env=[{"name": "HOSTILE", "value": hostile}],
    )
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    first, rest = out.read_text().split("\n", 1)
    assert first == f"{env['CONVERGED_SLURM_IMAGE']} alice"  # inside the SIF, as alice
    assert rest == hostile  # verbatim: --no-eval
    assert not (workdir / "pwned").exists()


def test_a_step_runs_under_charliecloud_too(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("charlie")
    out = workdir / f"{name}.txt"
    status = run(
        env,
        name,
        ["/bin/sh", "-c", f"test -e /ch/environment && id -un > {out}"],
        workdir,
        cluster="converged-charliecloud",
        image=env["CONVERGED_STEP_IMAGE_DIR"],
    )
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    assert out.read_text().strip() == "alice"


def test_an_mpi_step_runs_four_ranks_on_two_slurm_nodes(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("mpi")
    out = workdir / f"{name}.txt"
    rank = 'echo "rank $PMIX_RANK node $SLURMD_NODENAME/$SLURM_NODEID container $APPTAINER_CONTAINER"'
    status = run(
        env,
        name,
        ["/bin/sh", "-c", f"$CONVERGED_MPIRUN sh -c '{rank}' > {out}"],
        workdir,
        cluster="converged-apptainer",
        image=env["CONVERGED_SLURM_IMAGE"],
        resources={"cpus": 1, "memMiB": 200, "runtimeMinutes": 5, "nodes": 2, "tasks": 4},
    )
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    lines = sorted(out.read_text().splitlines())
    assert [ln.split(" node ")[0] for ln in lines] == [f"rank {i}" for i in range(4)], lines
    assert {ln.split(" node ")[1].split("/")[0] for ln in lines} == {"c1", "c2"}  # both Slurm nodes
    assert all(ln.endswith(env["CONVERGED_SLURM_IMAGE"]) for ln in lines)  # every rank in the SIF


def test_lammps_runs_as_an_mpi_step_over_two_slurm_nodes(
    controller: ControllerProcess, slurm_identities: dict[str, str], workdir: Path
) -> None:
    env, name = slurm_identities, unique("lammps")
    run_dir = workdir / name
    run_dir.mkdir()
    run_dir.chmod(0o1777)
    shutil.copy(EXAMPLES / "mpi" / "in.lj", run_dir / "in.lj")
    status = run(
        env,
        name,
        ["/bin/sh", "-c", "$CONVERGED_MPIRUN lmp -in in.lj -log log.lammps -screen none"],
        run_dir,
        cluster="converged-apptainer",
        image=env["CONVERGED_SLURM_IMAGE"],
        resources={"cpus": 1, "memMiB": 500, "runtimeMinutes": 10, "nodes": 2, "tasks": 4},
    )
    assert (status["phase"], status.get("exitCode")) == ("Succeeded", 0), status
    log = (run_dir / "log.lammps").read_text()
    assert "on 4 procs for 100 steps with 32000 atoms" in log, log[-2000:]
