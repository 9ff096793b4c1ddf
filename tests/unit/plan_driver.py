"""`snakemake --executor converged --converged-plan` on a real snakemake DAG with the cluster's answers
taken from objects captured on the local cluster (tests/data/plugin: Slurm cpu with 2 nodes of 4 CPUs,
gpu with 1 node, 4 CPUs and 2 a100; Kueue's default ClusterQueue). Our own edge, the run session's
reads, is what is replaced; snakemake, the routing, the simulation and the rendering are the real ones.

    python -m tests.unit.plan_driver -s examples/chains/Snakefile -d /tmp/x --converged-namespace team-a -j 10
"""

from __future__ import annotations

import sys
from typing import Any

from converged_bridge.routing import CapacityView
from converged_bridge.routing.capacity import map_kueue_queue, map_operators, map_slurm_clusters
from snakemake_executor_plugin_converged.session import RunSession
from snakemake_executor_plugin_converged.site import SiteDefaults
from tests.unit.test_routing_capacity import load


class CapturedSession(RunSession):
    def capacity(self) -> CapacityView:
        flavors = load("resourceflavors.json")["items"]
        queue = map_kueue_queue(load("localqueue-default.json"), load("clusterqueue-default.json"), flavors)
        return CapacityView(
            slurm=map_slurm_clusters([load("slurmcluster-with-status.json")], self.namespace),
            kueue=(queue,),
            operators=map_operators([]),
        )

    def read_site_defaults(self) -> SiteDefaults:
        return SiteDefaults()


def connect(cls: Any, *, kubeconfig: str | None, namespace: str, run_id: str, capacity_refresh: float) -> Any:
    return CapturedSession(None, namespace=namespace, run_id=run_id)  # type: ignore[arg-type]


def main(argv: list[str]) -> None:
    RunSession.connect = classmethod(connect)  # type: ignore[method-assign, assignment]
    from snakemake.cli import main as snakemake_main

    snakemake_main(["--executor", "converged", "--converged-plan", "--converged-run-id", "sm-seed", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
