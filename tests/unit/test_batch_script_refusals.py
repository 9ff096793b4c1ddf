"""build_batch_script and its directives refuse unsafe input, naming the field. The models already
refuse most of this; the builder refuses it again for objects that skipped validation (model_construct,
model_copy(update=...)). (Goldens and real execution are in test_batch_script.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from converged_bridge.api.slurmcluster import ContainerRuntime
from converged_bridge.api.workflowstep import EnvVar, Resources, SlurmPlacement, WorkflowStep
from converged_bridge.errors import InvalidStep
from converged_bridge.slurm.batch_script import (
    build_batch_script,
    build_secret_env_file,
)
from tests.unit.test_batch_script import LOG_DIR, UID, make_cluster, make_step

# ---------------------------------------------------------------------------------------------------------
# Rejections. The models already refuse most of this; the builder refuses it again for objects that
# skipped validation (model_construct, model_copy(update=...)), naming the field.


def with_spec(step: WorkflowStep, **update: Any) -> WorkflowStep:
    return step.model_copy(update={"spec": step.spec.model_copy(update=update)})


def test_model_refuses_newline_in_partition() -> None:
    with pytest.raises(ValidationError):
        SlurmPlacement(cluster="hpc", partition="gpu\n")


@pytest.mark.parametrize("partition", ["gpu\n#SBATCH --uid=0", "gpu\r", "gpu long", "gpu;reboot"])
def test_unsafe_partition_is_rejected(partition: str) -> None:
    step = with_spec(make_step(), slurm=SlurmPlacement.model_construct(cluster="hpc", partition=partition))
    with pytest.raises(InvalidStep, match=r"spec\.slurm\.partition") as raised:
        build_batch_script(step, make_cluster(), uid=UID, log_dir=LOG_DIR)
    assert raised.value.field == "spec.slurm.partition"


def test_newline_in_partition_names_the_reason() -> None:
    step = with_spec(make_step(), slurm=SlurmPlacement.model_construct(cluster="hpc", partition="gpu\nx"))
    with pytest.raises(InvalidStep, match="newline"):
        build_batch_script(step, make_cluster(), uid=UID, log_dir=LOG_DIR)


def test_unsafe_cluster_default_is_rejected() -> None:
    cluster = make_cluster()
    assert cluster.defaults is not None
    cluster = cluster.model_copy(
        update={"defaults": cluster.defaults.model_copy(update={"account": "lab\nx"})}
    )
    with pytest.raises(InvalidStep, match=r"SlurmCluster spec\.defaults\.account"):
        build_batch_script(make_step(), cluster, uid=UID, log_dir=LOG_DIR)


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A B", "A;B", "$(x)", ""])
def test_bad_env_name_is_rejected(name: str) -> None:
    step = with_spec(make_step(), env=[EnvVar.model_construct(name=name, value="v", value_from=None)])
    with pytest.raises(InvalidStep, match=r"spec\.env\[0\]\.name"):
        build_batch_script(step, make_cluster(), uid=UID, log_dir=LOG_DIR)


def test_model_refuses_bad_env_name() -> None:
    with pytest.raises(ValidationError):
        EnvVar(name="A-B", value="v")


@pytest.mark.parametrize("runtime", [r for r in ContainerRuntime if r != ContainerRuntime.NONE])
def test_container_runtime_needs_an_image(runtime: ContainerRuntime) -> None:
    with pytest.raises(InvalidStep, match=rf"spec\.image: containerRuntime {runtime.value} needs an image"):
        build_batch_script(make_step(image=None), make_cluster(runtime), uid=UID, log_dir=LOG_DIR)


def test_image_without_container_runtime_is_rejected() -> None:
    with pytest.raises(InvalidStep, match=r"spec\.image: .*containerRuntime none"):
        build_batch_script(make_step(), make_cluster(ContainerRuntime.NONE), uid=UID, log_dir=LOG_DIR)


def test_image_that_looks_like_an_option_is_rejected() -> None:
    with pytest.raises(InvalidStep, match=r"spec\.image"):
        build_batch_script(make_step(image="--bind=/:/host"), make_cluster(), uid=UID, log_dir=LOG_DIR)


def test_secret_env_without_file_is_rejected() -> None:
    step = make_step(env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])
    with pytest.raises(InvalidStep, match=r"spec\.env: secret variables T need a secret_env_file"):
        build_batch_script(step, make_cluster(), uid=UID, log_dir=LOG_DIR)


@pytest.mark.parametrize("uid", ["", "not-a-uid", UID.upper(), UID + "\n", f"{UID} --uid=0"])
def test_bad_uid_is_rejected(uid: str) -> None:
    with pytest.raises(InvalidStep, match=r"metadata\.uid"):
        build_batch_script(make_step(), make_cluster(), uid=uid, log_dir=LOG_DIR)


@pytest.mark.parametrize("log_dir", ["relative/logs", "/logs/%j", "/logs with space", "/logs\n#SBATCH -x"])
def test_unsafe_log_dir_is_rejected(log_dir: str) -> None:
    with pytest.raises(InvalidStep, match="log_dir"):
        build_batch_script(make_step(), make_cluster(), uid=UID, log_dir=log_dir)


def test_working_dir_that_cannot_be_bound_is_rejected() -> None:
    with pytest.raises(InvalidStep, match=r"spec\.workingDir"):
        build_batch_script(make_step(workingDir="/data/a:b"), make_cluster(), uid=UID, log_dir=LOG_DIR)


def test_nul_in_argument_is_rejected() -> None:
    with pytest.raises(InvalidStep, match=r"spec\.command\[2\]"):
        build_batch_script(
            make_step(command=["echo", "ok", "a\0b"]), make_cluster(), uid=UID, log_dir=LOG_DIR
        )


def test_program_that_looks_like_an_option_is_rejected() -> None:
    with pytest.raises(InvalidStep, match=r"spec\.command\[0\]"):
        build_batch_script(make_step(command=["--help"]), make_cluster(), uid=UID, log_dir=LOG_DIR)


def test_unvalidated_resources_are_rejected() -> None:
    bad = Resources.model_construct(cpus=0, mem_mib=None, gpus=0, gpu_model=None, nodes=1, tasks=1)
    with pytest.raises(InvalidStep, match=r"spec\.resources\.cpus"):
        build_batch_script(with_spec(make_step(), resources=bad), make_cluster(), uid=UID, log_dir=LOG_DIR)


def test_secret_env_file_refuses_bad_names() -> None:
    with pytest.raises(InvalidStep, match="secret environment variable"):
        build_secret_env_file({"BAD-NAME": "x"})
