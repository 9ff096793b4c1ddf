"""The controller embedded in another Python process (how the executor hosts it without a daemon)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from converged_bridge.api.workflowstep import Backend
from converged_bridge.controller.runner import Controller
from converged_bridge.controller.settings import ControllerSettings
from converged_bridge.kube.core import KubeCore, load_api_client
from tests.integration.conftest import TEST_SELECTOR
from tests.integration.test_controller_slurm import TERMINAL, create, step_manifest, wait_phase

pytestmark = pytest.mark.integration


def test_embedded_controller_runs_steps_with_one_slurm_query_per_poll(
    slurm_identities: dict[str, str], workdir: Path
) -> None:
    env = slurm_identities
    kube = KubeCore(load_api_client(env["KUBECONFIG"]), field_manager="converged-controller")
    controller = Controller.connect(
        kube, ControllerSettings(poll_interval=0.5, namespace="team-b", label_selector=TEST_SELECTOR)
    )
    controller.start()
    try:
        names = [f"emb-{uuid.uuid4().hex[:6]}" for _ in range(4)]
        for name in names:
            create(env, step_manifest(name, "team-b", ["true"], workdir))
        statuses = [wait_phase(env, "team-b", name, TERMINAL)["status"] for name in names]
        assert [s["phase"] for s in statuses] == ["Succeeded"] * 4
        # one Slurm listing per poll cycle, whatever the number of steps
        assert controller.queries(Backend.SLURM) <= controller.cycles
        assert kube.calls["list"] >= 1 and kube.calls["get"] == 0  # never a GET per step
    finally:
        controller.stop()
