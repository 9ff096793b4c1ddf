"""The mirror queries its clusters side by side: a cluster slow to answer delays no other.

Kubernetes is our own edge (the in-memory KubeObjects of test_daemon_heartbeat); the quick cluster is
slurmrestd replaying real captured answers (Slurm 24.11), the slow one the same answers held back until
the test lets them through, as a slurmrestd waiting out MessageTimeout for a stopped slurmctld would.
"""

from __future__ import annotations

import threading
from typing import Any

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.kube.kueue_api import KueueApi
from converged_bridge.slurm.capacity import CapacitySnapshot
from converged_bridge.slurm.restd import RestdTransport
from converged_daemon.mirror import Mirror, MirrorSettings
from converged_daemon.plan import SlurmUnreachable
from tests.unit.clocks import ManualClock
from tests.unit.test_backend_slurm_plan import CLUSTER_SPEC
from tests.unit.test_daemon_heartbeat import Objects
from tests.unit.test_slurm_capacity import D24, restd_serving


class HeldBack:
    """slurmrestd that answers only once `release` is set; counts the queries it was asked."""

    def __init__(self, restd: RestdTransport) -> None:
        self.restd = restd
        self.release = threading.Event()
        self.asked = 0

    def query_capacity(self, *, refresh_partitions: bool = True) -> CapacitySnapshot:
        self.asked += 1
        if not self.release.wait(timeout=30):
            raise AssertionError("never released")
        return self.restd.query_capacity(refresh_partitions=refresh_partitions)

    def close(self) -> None:
        self.restd.close()


def test_a_slow_cluster_is_planned_the_cycle_after_it_answers_and_delays_no_other() -> None:
    objects = Objects()
    for name in ("quick", "slow"):
        objects.add_cluster(name)
        objects.store["slurmclusters", name]["spec"] = CLUSTER_SPEC
    slow = HeldBack(restd_serving("v0.0.42", D24)[0])
    transports: dict[str, Any] = {"quick": restd_serving("v0.0.42", D24)[0], "slow": slow}
    clock = ManualClock()

    def factory(name: str, spec: SlurmClusterSpec, read_secret: Any) -> Any:
        return transports[name]

    mirror = Mirror(
        objects,  # type: ignore[arg-type]
        lambda *a: "",
        MirrorSettings(slurm_wait=3.0),  # ample for the quick answer on a loaded machine
        transport_factory=factory,
        kueue=KueueApi(objects, version="v1beta2"),  # type: ignore[arg-type]
        clock=clock.wall,
        monotonic_clock=clock.monotonic,
    )
    try:
        first = mirror.cycle()
        assert set(first.snapshots) == {"quick"}, first.errors
        assert not isinstance(first.snapshots["quick"], SlurmUnreachable)
        assert {name for _, plural, name in objects.writes if plural == "nodes"} == {
            "slurm-quick-cpu",
            "slurm-quick-gpu",
        }
        second = mirror.cycle()  # still no answer: the query under way is not asked again
        assert set(second.snapshots) == {"quick"} and slow.asked == 1

        slow.release.set()
        mirror._reading["slow"].result(timeout=30)  # the answer has arrived; the next cycle plans it
        third = mirror.cycle()
        assert set(third.snapshots) == {"quick", "slow"}
        assert "slurm-slow-cpu" in {name for _, plural, name in objects.writes if plural == "nodes"}
        fourth = mirror.cycle()  # answering at once again: asked and planned in the same cycle
        assert set(fourth.snapshots) == {"quick", "slow"} and slow.asked == 2
    finally:
        slow.release.set()
        mirror.close()
