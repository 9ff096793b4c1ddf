"""A StepAllocation on a Slurm cluster that stops answering: nothing is decided on it while the cluster is
in its outage backoff, and a submit that fails as unreachable puts the cluster in an outage too; once it
answers the allocation's job is submitted, exactly once.

The cluster's SlurmTransport is our own edge (the recording fake of test_slurm_outage)."""

from __future__ import annotations

from pathlib import Path

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.backends.slurm import SlurmBackend
from converged_bridge.backends.slurm.intents import SubmitAllocationJob
from converged_bridge.backends.slurm.unit import BACKOFF_FIRST
from converged_bridge.reconcile.intents import Executed
from converged_bridge.reconcile.status import StatusTiming
from tests.unit.clocks import ManualClock
from tests.unit.test_allocation_plans import allocation
from tests.unit.test_backend_slurm_plan import CLUSTER_SPEC
from tests.unit.test_controller_cycle import shared_log_dir
from tests.unit.test_slurm_outage import FlakyTransport


def test_an_allocation_waits_out_its_clusters_outage_and_is_submitted_once(tmp_path: Path) -> None:
    clock, transport = ManualClock(), FlakyTransport([])
    slurm = SlurmBackend(
        lambda: {"hpc": SlurmClusterSpec.model_validate(CLUSTER_SPEC)},
        lambda namespace, name, key: "token",
        log_dir=shared_log_dir(tmp_path),
        transport_factory=lambda name, spec, read: transport,
        clock=clock.wall,
        monotonic_clock=clock.monotonic,
    )
    alloc = allocation(workingDir=str(tmp_path))

    def decide() -> list[SubmitAllocationJob] | None:
        intents = slurm.decide_allocation(alloc, [], StatusTiming(now=clock.wall()))
        return None if intents is None else [i for i in intents if isinstance(i, SubmitAllocationJob)]

    transport.down = True
    slurm.observe([], [alloc])
    assert "hpc" in slurm.outages and decide() is None  # no listing: no decision
    transport.down = False
    slurm.observe([], [alloc])
    assert transport.listings == 1  # left alone during its backoff
    clock.advance(BACKOFF_FIRST)
    slurm.observe([], [alloc])
    assert "hpc" not in slurm.outages
    (submit,) = decide() or []
    transport.down = True  # it goes away between the listing and the submit
    assert slurm.execute_allocation(alloc, submit) == Executed(stop=True)
    assert "hpc" in slurm.outages and decide() is None and transport.submitted == []
    transport.down = False
    clock.advance(BACKOFF_FIRST)
    slurm.observe([], [alloc])
    (submit,) = decide() or []
    slurm.execute_allocation(alloc, submit)
    assert len(transport.submitted) == 1 and decide() == []  # submitted, not listed yet: not again
