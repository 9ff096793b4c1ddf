"""Where the local cluster keeps its state, and which ports it uses (all on 127.0.0.1)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # deploy/local


def read_versions(path: Path = HERE / "versions.env") -> dict[str, str]:
    """Parse versions.env (KEY=VALUE lines, # comments)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class Ports:
    etcd_client: int = 23790
    etcd_peer: int = 23800
    apiserver: int = 6443
    controller_manager: int = 10257
    scheduler: int = 10259
    kueue_webhook: int = 9443
    kueue_metrics: int = 8443
    kueue_health: int = 8081
    jobset_webhook: int = 9444
    jobset_health: int = 8082
    coredns_health: int = 8180
    coredns_ready: int = 8181
    kwok_server: int = 10247
    kubelet_healthz: int = 10248
    kubelet: int = 10250
    mariadb: int = 33306
    slurmctld: int = 6817
    slurmdbd: int = 6819
    slurmrestd: int = 6820
    slurmd_base: int = 17001  # slurmd of node i listens on slurmd_base + i
    # the second Slurm cluster, hpc2 (Slurm 26.05 in a Debian sid root); MariaDB and munge are shared
    hpc2_slurmctld: int = 6917
    hpc2_slurmdbd: int = 6919
    hpc2_slurmrestd: int = 6920
    hpc2_slurmd_base: int = 17101
    registry: int = 5443  # the site registry (nginx, TLS), at registry.converged.local


@dataclass(frozen=True)
class Layout:
    """All paths of one local cluster. Override the root with CONVERGED_LOCAL_DIR."""

    root: Path
    cache: Path
    ports: Ports
    versions: dict[str, str]

    @classmethod
    def default(cls) -> Layout:
        root = Path(os.environ.get("CONVERGED_LOCAL_DIR", "/var/lib/converged-local"))
        cache = Path(os.environ.get("CONVERGED_CACHE", "/var/cache/converged"))
        return cls(root=root, cache=cache, ports=Ports(), versions=read_versions())

    @property
    def run(self) -> Path:
        """Pid files."""
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def shared(self) -> Path:
        """The shared directory every Slurm node and every pod of the real node sees (same path)."""
        return self.root / "shared"

    def component_dir(self, name: str) -> Path:
        return self.root / name

    def version(self, component: str) -> str:
        """<COMPONENT>_VERSION of versions.env, a dash read as an underscore (mpi-operator)."""
        return self.versions[f"{component.upper().replace('-', '_')}_VERSION"]

    def bin(self, component: str, name: str) -> Path:
        """Path of a cached binary, e.g. bin("kubernetes", "kubelet"), bin("mpi-operator", "mpi-operator")."""
        return self.cache / f"{component}-{self.version(component)}" / name

    def cached(self, component: str, sub: str) -> Path:
        return self.cache / f"{component}-{self.version(component)}" / sub

    @property
    def operator_crds(self) -> Path:
        """CRDs of JobSet and MPIJob, from the versions the local cluster runs (build-binaries.sh)."""
        v = self.versions
        return self.cache / f"operator-crds-jobset-{v['JOBSET_VERSION']}-mpi-{v['MPI_OPERATOR_VERSION']}"

    def ensure(self) -> None:
        for d in (self.root, self.run, self.logs, self.pki, self.shared):
            d.mkdir(parents=True, exist_ok=True)
