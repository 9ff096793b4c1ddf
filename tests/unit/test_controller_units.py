"""The controller reaches backends only through its units, one registered per backend: every backend
of the API has its unit and its routing rules, and a step whose backend has no unit here is left alone
with one clear warning while the other steps go on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import pytest

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import Backend
from converged_bridge.backends.base import BackendUnit
from converged_bridge.backends.slurm import SlurmBackend
from converged_bridge.controller.runner import Controller
from converged_bridge.controller.settings import ControllerSettings
from converged_bridge.controller.units import UNIT_FACTORIES, UnitContext, build_units
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.kube.steps import WorkflowSteps
from converged_bridge.routing import STANDARD_RULES, UnknownBackend
from tests.unit.clocks import ManualClock
from tests.unit.test_backend_slurm_plan import CLUSTER_SPEC
from tests.unit.test_controller_cycle import (
    T0,
    ListingTransport,
    RecordingKube,
    shared_log_dir,
    step_object,
)


def test_every_backend_of_the_api_has_its_unit_and_its_routing_rules() -> None:
    assert set(UNIT_FACTORIES) == set(Backend)
    assert set(STANDARD_RULES.names()) == {b.value for b in Backend}


def test_build_units_builds_one_unit_per_registered_factory() -> None:
    built: list[UnitContext] = []

    unit = cast(BackendUnit, object())

    def fake(context: UnitContext) -> BackendUnit:
        built.append(context)
        return unit

    context = UnitContext(
        cast(KubeObjects, None), ControllerSettings(), ManualClock().wall, ManualClock().monotonic
    )
    units = build_units(context, {Backend.KUEUE: fake})
    assert units == {Backend.KUEUE: unit} and built == [context]


def test_a_step_of_a_backend_without_a_unit_is_left_alone_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kube, transport, clock = RecordingKube(), ListingTransport([]), ManualClock(wall=T0)
    slurm = SlurmBackend(
        lambda: {"hpc": SlurmClusterSpec.model_validate(CLUSTER_SPEC)},
        kube.read_secret_key,
        log_dir=shared_log_dir(tmp_path),
        transport_factory=lambda name, spec, read: transport,
        clock=clock.wall,
        monotonic_clock=clock.monotonic,
    )
    controller = Controller(
        cast(WorkflowSteps, kube),
        kube,
        {Backend.SLURM: slurm},  # this controller drives Slurm only
        ControllerSettings(log_dir=shared_log_dir(tmp_path)),
        clock=clock.wall,
        monotonic_clock=clock.monotonic,
    )
    on_kueue = step_object("on-kueue")
    on_kueue["spec"] = {**on_kueue["spec"], "backend": "kueue", "image": "busybox"}
    on_kueue["spec"].pop("slurm")
    controller.on_event("SYNC", [kube.put(on_kueue), kube.put(step_object("on-slurm"))])

    with caplog.at_level(logging.WARNING, logger="converged.controller"):
        controller.poll_and_reconcile()
        controller.poll_and_reconcile()
    assert [w for w in kube.writes if w[0] == "on-kueue"] == []  # never sent down another backend's unit
    assert ("on-slurm", "status Queued") in kube.writes and len(transport.submitted) == 1
    told = [r.getMessage() for r in caplog.records if "on-kueue" in r.getMessage()]
    assert told == [
        "step team-a/on-kueue is left alone: no backend 'kueue' is registered (registered: slurm)"
    ]
    with pytest.raises(UnknownBackend, match="registered: slurm"):
        controller.unit(Backend.KUEUE)
