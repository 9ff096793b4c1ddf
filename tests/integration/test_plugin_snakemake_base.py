"""Issue 7 acceptance 1: snakemake's own executor-plugin test base with `--executor converged`, once
routed to Slurm (the step image as a SIF through Apptainer, as alice) and once to Kueue (batch Jobs on the
real kubelet node through LocalQueue `real`, the shared directory mounted), with the embedded controller.

The base runs snakemake in this process on `tmp_path`; here tmp_path is a fresh directory on the shared
filesystem (the steps run as another user on the Slurm nodes), and the umask is 0 while it runs so
the steps may write into the `.snakemake` directory this process creates.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import snakemake.common.tests

from snakemake_executor_plugin_converged import ExecutorSettings
from tests.integration.plugin_support import PLUGIN_NS, REAL_QUEUE, apply_plugin_cluster, apply_plugin_queue

pytestmark = pytest.mark.integration


@pytest.fixture
def tmp_path(slurm_identities: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    apply_plugin_cluster(slurm_identities)
    apply_plugin_queue(slurm_identities)
    monkeypatch.setenv("KUBECONFIG", slurm_identities["KUBECONFIG"])
    for name in ("CONVERGED_SLURM_IMAGE", "CONVERGED_STEP_IMAGE", "CONVERGED_SHARED_DIR"):
        monkeypatch.setenv(name, slurm_identities[name])
    path = Path(slurm_identities["CONVERGED_SHARED_DIR"]) / "plugin-base" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    path.parent.chmod(0o1777)
    path.chmod(0o1777)
    old = os.umask(0)
    cwd = os.getcwd()
    try:
        yield path
    finally:
        os.umask(old)
        os.chdir(cwd)


class TestWorkflowsOnSlurm(snakemake.common.tests.TestWorkflowsLocalStorageBase):  # type: ignore[misc]
    __test__ = True

    def get_executor(self) -> str:
        return "converged"

    def _copy_test_files(self, test_path: Path, tmp_path: Path) -> None:
        """Copy the testcase, then open its directories to the step user (copytree keeps 0755)."""
        super()._copy_test_files(test_path, tmp_path)
        for directory in [tmp_path, *(p for p in Path(tmp_path).rglob("*") if p.is_dir())]:
            directory.chmod(0o1777)

    def get_executor_settings(self) -> ExecutorSettings:
        return ExecutorSettings(
            namespace=PLUGIN_NS,
            default_backend="slurm",
            slurm_cluster="converged-plugin",
            controller="embedded",
            image=os.environ["CONVERGED_SLURM_IMAGE"],
            poll_interval=1.0,
        )


class TestWorkflowsOnKueue(TestWorkflowsOnSlurm):
    __test__ = True

    def get_executor_settings(self) -> ExecutorSettings:
        return ExecutorSettings(
            namespace=PLUGIN_NS,
            default_backend="kueue",
            local_queue=REAL_QUEUE,
            controller="embedded",
            image=os.environ["CONVERGED_STEP_IMAGE"],
            shared_paths=os.environ["CONVERGED_SHARED_DIR"],
            poll_interval=1.0,
        )
