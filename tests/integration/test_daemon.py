"""The resource daemon against the local cluster: the real Slurm 22.05, kube-apiserver and Kueue.

`converged-daemon` runs as real processes (mirroring only SlurmCluster `converged`, cycle 2 s, leader
Lease of 6 s). Tests that drain a node or stop slurmctld restore the cluster in `finally`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.conftest import cluster
from tests.integration.conftest import eventually, kubectl

pytestmark = pytest.mark.integration

INTERVAL = 2.0
LEASE_SECONDS = 6
CPU, GPU = "slurm-converged-cpu", "slurm-converged-gpu"
SLURMCTLD_PIDS = (
    Path("/var/lib/converged-local/slurm/run/slurmctld.pid"),
    Path("/var/lib/converged-local/run/slurmctld.pid"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DaemonProcess:
    """`converged-daemon` as a real process; its JSON log goes to a file."""

    def __init__(self, env: dict[str, str], log: Path, lease: str, kubeconfig: str | None = None) -> None:
        self.log, self.port, self.lease = log, free_port(), lease
        self.identity = f"test-{uuid.uuid4().hex[:6]}"
        self._env, self._kubeconfig = env, kubeconfig or env["KUBECONFIG"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str, controller: bool = False) -> DaemonProcess:
        """Start it; with `controller`, the hosted WorkflowStep controller runs too (flags in `extra`)."""
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "converged_daemon",
                f"--kubeconfig={self._kubeconfig}",
                f"--identity={self.identity}",
                "--health-address=127.0.0.1",
                f"--health-port={self.port}",
                "--clusters=converged",
                f"--interval={INTERVAL}",
                "--node-lease-renew=4",
                "--lease-namespace=converged-system",
                f"--lease-name={self.lease}",
                f"--lease-seconds={LEASE_SECONDS}",
                "--lease-renew-deadline=4",
                "--lease-retry-period=1",
                *([] if controller else ["--no-controller"]),
                "--log-level=debug",
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        """The sum of all samples of a metric (all label sets)."""
        _, text = self.get("/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and line[len(name)] in " {"
        )

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def restart_slurmctld() -> None:
    """`cluster up` restarts what is down. Slurm 22.05's slurmctld has been seen dying right after a
    restart ("AuthType change requires restart", on a reconfigure during start-up), and other sessions on
    this machine repair it concurrently: try again until `cluster status` says it is healthy."""
    for _ in range(6):
        if cluster("up", check=False).returncode == 0 or cluster("status", check=False).returncode == 0:
            return
        time.sleep(2)
    cluster("up")


def get_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(kubectl(env, "get", "-o", "json", *args))


def node(env: dict[str, str], name: str) -> dict[str, Any]:
    obj: dict[str, Any] = get_json(env, "node", name)
    return obj


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def sinfo_in_service() -> dict[str, dict[str, int]]:
    """What `sinfo --json` says each partition has in service: nodes, CPUs, memory (MiB), GPUs."""
    doc = json.loads(subprocess.run(["sinfo", "--json"], capture_output=True, text=True, check=True).stdout)
    out: dict[str, dict[str, int]] = {}
    for n in doc["nodes"]:
        down = n["state"] in ("down", "future", "unknown") or {"DRAIN", "NOT_RESPONDING", "FAIL"} & set(
            n["state_flags"]
        )
        for p in n["partitions"]:
            total = out.setdefault(p, {"nodes": 0, "cpus": 0, "memory": 0, "gpus": 0})
            if not down:
                total["nodes"] += 1
                total["cpus"] += n["cpus"]
                total["memory"] += n["real_memory"]
                gres = n["gres"]
                total["gpus"] += int(gres.rsplit(":", 1)[1].split("(")[0]) if gres.startswith("gpu") else 0
    return out


def quotas(env: dict[str, str]) -> dict[str, dict[str, str]]:
    queue = get_json(env, "clusterqueue", "slurm-converged")
    (group,) = queue["spec"]["resourceGroups"]
    return {f["name"]: {r["name"]: r["nominalQuota"] for r in f["resources"]} for f in group["flavors"]}


def slurm_cluster_status(env: dict[str, str]) -> dict[str, Any]:
    status: dict[str, Any] = get_json(env, "slurmcluster", "converged").get("status") or {}
    return status


def conditions(env: dict[str, str]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in slurm_cluster_status(env).get("conditions", [])}


@pytest.fixture(scope="module")
def daemon(
    slurm_identities: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    lease = f"converged-daemon-test-{uuid.uuid4().hex[:6]}"
    proc = DaemonProcess(slurm_identities, tmp_path_factory.mktemp("daemon") / "daemon.log", lease).start()
    eventually("the daemon leading", lambda: proc.metric("converged_daemon_leader") == 1, timeout=60)
    # Nodes, flavors and the queue may be left from an earlier run (NotReady since its daemon stopped):
    # everything below holds only once this daemon has seen and corrected them
    eventually("a first cycle", lambda: proc.metric("converged_daemon_cycles_total") >= 1, timeout=60)
    eventually(
        "both virtual nodes",
        lambda: (
            CPU in kubectl(slurm_identities, "get", "nodes")
            and GPU in kubectl(slurm_identities, "get", "nodes")
        ),
        timeout=60,
    )
    yield proc
    proc.stop()
    kubectl(slurm_identities, "delete", "lease", "-n", "converged-system", lease, "--ignore-not-found")


def test_virtual_nodes_flavors_and_queue_match_sinfo(
    daemon: DaemonProcess, slurm_identities: dict[str, str]
) -> None:
    env = slurm_identities

    def matches() -> bool:
        want = sinfo_in_service()
        for name, partition in ((CPU, "cpu"), (GPU, "gpu")):
            capacity = node(env, name)["status"]["capacity"]
            expected = want[partition]
            if (
                capacity["cpu"] != str(expected["cpus"])
                or capacity["memory"] != f"{expected['memory']}Mi"
                or capacity["converged.dev/slurm-nodes"] != str(expected["nodes"])
                or capacity["nvidia.com/gpu"] != str(expected["gpus"])
            ):
                return False
        return True

    eventually("node capacity equal to sinfo's", matches, timeout=30)
    gpu = node(env, GPU)
    assert gpu["status"]["capacity"]["converged.dev/gpu-a100"] == "2"
    assert gpu["status"]["capacity"]["pods"] == "0"
    assert gpu["metadata"]["labels"]["converged.dev/slurm-partition"] == "gpu"
    # an earlier run's Node was marked Unknown by the node-lifecycle controller; this daemon restores it
    eventually("the gpu node Ready", lambda: ready(node(env, GPU))["status"] == "True", timeout=30)
    # only our taint: the node-lifecycle controller (which taints a node whose heartbeat stopped) is content
    eventually(
        "no taint but converged's",
        lambda: (
            node(env, GPU)["spec"]["taints"]
            == [{"key": "converged.dev/slurm", "value": "converged", "effect": "NoSchedule"}]
        ),
        timeout=30,
    )

    described = kubectl(env, "describe", "node", CPU)
    assert "converged.dev/slurm=converged:NoSchedule" in described
    assert "converged.dev/slurm-nodes:" in described and "SlurmPartitionUp" in described

    for name, partition in ((CPU, "cpu"), (GPU, "gpu")):
        flavor = get_json(env, "resourceflavor", name)["spec"]
        assert flavor["nodeLabels"] == {
            "converged.dev/slurm-cluster": "converged",
            "converged.dev/slurm-partition": partition,
        }

    def quota_is_idle_capacity() -> bool:  # quotaPolicy idle (the default); jobs of other tests move it
        by_partition = {p["name"]: p for p in slurm_cluster_status(env).get("partitions", [])}
        q = quotas(env)
        return all(
            q[name]["cpu"] == str(by_partition[p]["idle"]["cpus"])
            and q[name]["memory"] == f"{by_partition[p]['idle']['memoryMiB']}Mi"
            for name, p in ((CPU, "cpu"), (GPU, "gpu"))
        )

    eventually(
        "ClusterQueue quota = idle capacity in SlurmCluster status", quota_is_idle_capacity, timeout=30
    )
    status = slurm_cluster_status(env)
    assert conditions(env) == {"Reachable": "True", "Synced": "True"}
    assert status["slurmVersion"].startswith("22.05") and status["openapiVersion"] == "v0.0.38"
    assert status["observedGeneration"] >= 1
    assert {p["name"]: p["total"]["cpus"] for p in status["partitions"]} == {
        p: v["cpus"] for p, v in sinfo_in_service().items()
    }
    row = kubectl(env, "get", "slurmcluster", "converged", "--no-headers").split()
    assert row[3:6] == [status["slurmVersion"], "True", "True"]  # NAME TRANSPORT URL Slurm Reachable Synced
    # the node-lifecycle controller sees the heartbeat Lease
    lease = eventually(  # renewed by its own heartbeat thread, which may not have run yet
        "the virtual node's heartbeat Lease",
        lambda: kubectl(
            env, "get", "lease", "-n", "kube-node-lease", CPU, "-o", "json", "--ignore-not-found"
        ),
        timeout=30,
    )
    assert json.loads(lease)["metadata"]["ownerReferences"][0]["name"] == CPU


def test_unchanged_cycles_write_nothing_but_heartbeats(
    daemon: DaemonProcess, slurm_identities: dict[str, str]
) -> None:
    env = slurm_identities

    def node_versions() -> dict[str, str]:
        return {n: node(env, n)["metadata"]["resourceVersion"] for n in (CPU, GPU)}

    def one_quiet_cycle() -> bool:  # recovery from an earlier run's leftovers is over
        before, cycles = node_versions(), daemon.metric("converged_daemon_cycles_total")
        eventually("a cycle", lambda: daemon.metric("converged_daemon_cycles_total") > cycles, timeout=30)
        return node_versions() == before

    eventually("a cycle that writes no Node", one_quiet_cycle, timeout=90)
    versions = node_versions()
    flavors = {n: get_json(env, "resourceflavor", n)["metadata"]["resourceVersion"] for n in (CPU, GPU)}
    cycles = daemon.metric("converged_daemon_cycles_total")
    node_writes = daemon.metric('converged_daemon_kube_writes_total{action="apply-nodes"}')
    eventually(
        "three cycles", lambda: daemon.metric("converged_daemon_cycles_total") >= cycles + 3, timeout=30
    )
    assert node_versions() == versions
    assert {
        n: get_json(env, "resourceflavor", n)["metadata"]["resourceVersion"] for n in (CPU, GPU)
    } == flavors
    assert daemon.metric('converged_daemon_kube_writes_total{action="apply-nodes"}') == node_writes
    assert daemon.metric("converged_daemon_node_heartbeats_total") > 0


def test_drain_lowers_capacity_within_two_cycles_and_resume_restores(
    daemon: DaemonProcess, slurm_identities: dict[str, str]
) -> None:
    env = slurm_identities
    eventually(
        "c1 in service", lambda: node(env, CPU)["status"]["capacity"]["converged.dev/slurm-nodes"] == "2"
    )
    try:
        subprocess.run(
            ["scontrol", "update", "nodename=c1", "state=drain", "reason=converged-daemon-test"], check=True
        )
        drained_at = time.monotonic()
        eventually(
            "capacity without c1", lambda: node(env, CPU)["status"]["capacity"]["cpu"] == "4", timeout=30
        )
        took = time.monotonic() - drained_at
        assert took <= 2 * INTERVAL + 2, f"capacity followed the drain after {took:.1f}s"
        assert node(env, CPU)["status"]["capacity"]["converged.dev/slurm-nodes"] == "1"
        assert int(quotas(env)[CPU]["cpu"]) <= 4
    finally:
        subprocess.run(["scontrol", "update", "nodename=c1", "state=resume"], check=False)
    eventually(
        "capacity with c1 again", lambda: node(env, CPU)["status"]["capacity"]["cpu"] == "8", timeout=30
    )


def test_slurmctld_outage_marks_nodes_not_ready_and_deletes_nothing(
    daemon: DaemonProcess, slurm_identities: dict[str, str], kube_api: Any
) -> None:
    """Other sessions on this machine repair a stopped slurmctld with `cluster up` at once, so the outage
    may last only seconds: the API is polled fast, and slurmctld stopped again if it came back unseen."""
    from kubernetes import client

    env = slurm_identities
    custom, core = client.CustomObjectsApi(kube_api), client.CoreV1Api(kube_api)
    eventually("Reachable", lambda: conditions(env).get("Reachable") == "True")
    seen: dict[str, Any] = {}

    def outage_seen() -> bool:
        status: dict[str, Any] = cast(
            dict[str, Any],
            custom.get_cluster_custom_object("converged.dev", "v1alpha1", "slurmclusters", "converged"),
        )
        conds = {c["type"]: c["status"] for c in status.get("status", {}).get("conditions", [])}
        if conds.get("Reachable") == "False":
            seen.setdefault("status", status["status"])
        nodes = {n: core.read_node(n) for n in (CPU, GPU)}
        if all(
            next(c for c in o.status.conditions if c.type == "Ready").status == "False"
            for o in nodes.values()
        ):
            seen.setdefault("nodes", nodes)
            seen.setdefault("queue", get_json(env, "clusterqueue", "slurm-converged"))
            seen.setdefault("flavor", get_json(env, "resourceflavor", CPU)["metadata"]["name"])
        return "status" in seen and "nodes" in seen

    try:
        deadline = time.monotonic() + 120
        while not outage_seen() and time.monotonic() < deadline:
            pidfile = next((p for p in SLURMCTLD_PIDS if p.exists()), None)
            if pidfile is not None:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
            until = time.monotonic() + 15
            while time.monotonic() < until and not outage_seen():
                time.sleep(0.1)
        assert "status" in seen, "the daemon never reported Reachable False"
        assert "nodes" in seen, "the virtual nodes never turned NotReady"
        conds = {c["type"]: c for c in seen["status"]["conditions"]}
        assert conds["Synced"]["status"] == "False"
        assert conds["Reachable"]["reason"] == "SlurmUnreachable"
        cpu = seen["nodes"][CPU]
        assert next(c for c in cpu.status.conditions if c.type == "Ready").reason == "SlurmUnreachable"
        # nothing deleted, no quota zeroed, capacity kept
        assert cpu.status.capacity["cpu"] != "0"
        assert seen["flavor"] == CPU
        queue = get_json(env, "clusterqueue", "slurm-converged")  # still in the outage, or just after
        assert queue["metadata"]["generation"] == seen["queue"]["metadata"]["generation"] or (
            conditions(env).get("Reachable") == "True"
        )
        assert seen["queue"]["spec"]["resourceGroups"], "quota kept"
        assert seen["status"]["partitions"], "the last known partitions stay in the status"
    finally:
        restart_slurmctld()
    eventually("Reachable again", lambda: conditions(env).get("Reachable") == "True", timeout=120)
    eventually("nodes Ready again", lambda: all(ready(node(env, n))["status"] == "True" for n in (CPU, GPU)))


def test_only_the_leader_writes_and_a_standby_takes_over(
    daemon: DaemonProcess, slurm_identities: dict[str, str], tmp_path: Path
) -> None:
    env = slurm_identities
    standby = DaemonProcess(env, tmp_path / "standby.log", daemon.lease).start()
    try:
        eventually("standby serving", lambda: standby.get("/readyz")[0] == 200, timeout=30)
        time.sleep(3 * INTERVAL)
        assert standby.metric("converged_daemon_leader") == 0
        assert standby.metric("converged_daemon_cycles_total") == 0
        assert standby.metric("converged_daemon_node_heartbeats_total") == 0
        assert daemon.metric("converged_daemon_leader") == 1
        holder = get_json(env, "lease", "-n", "converged-system", daemon.lease)["spec"]["holderIdentity"]
        assert holder == daemon.identity

        daemon.signal(signal.SIGKILL)  # no release: the standby must wait for the Lease to expire
        killed_at = time.monotonic()
        eventually("standby leading", lambda: standby.metric("converged_daemon_leader") == 1, timeout=30)
        took = time.monotonic() - killed_at
        assert took <= LEASE_SECONDS + 3, f"hand-over took {took:.1f}s"
        eventually("standby heartbeats", lambda: standby.metric("converged_daemon_node_heartbeats_total") > 0)
        assert ready(node(env, CPU))["status"] == "True"

        standby.signal(signal.SIGTERM)  # graceful: stops writing and releases the Lease
        assert standby.proc is not None and standby.proc.returncode == 0
        lease = get_json(env, "lease", "-n", "converged-system", daemon.lease)["spec"]
        assert not lease.get("holderIdentity")
    finally:
        standby.stop()
