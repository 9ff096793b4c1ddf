"""The transport a SlurmCluster asks for (slurmrestd or the CLI): the one factory the controller and
the daemon share."""

from __future__ import annotations

from converged_bridge.api.slurmcluster import SlurmClusterSpec, Transport
from converged_bridge.errors import PermanentBackendError
from converged_bridge.slurm.cli import CliTransport
from converged_bridge.slurm.restd import RestdTransport
from converged_bridge.slurm.tokens import SecretReader, TokenSource
from converged_bridge.slurm.transport import SlurmTransport


def build_transport(name: str, spec: SlurmClusterSpec, read_secret: SecretReader) -> SlurmTransport:
    """The transport a SlurmCluster asks for."""
    if spec.transport == Transport.CLI:
        cli = spec.cli
        return CliTransport(bin_dir=cli.bin_dir if cli else None, slurm_conf=cli.slurm_conf if cli else None)
    if spec.restd is None:
        raise PermanentBackendError(f"SlurmCluster {name} uses transport restd but has no restd settings")
    tokens = TokenSource(name, spec, read_secret)
    return RestdTransport(
        spec.restd.url, tokens, service_user=tokens.service_user, api_version=spec.restd.openapi_version
    )
