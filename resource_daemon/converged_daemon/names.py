"""Names, labels and resource names of the objects the daemon mirrors a Slurm cluster into (pure)."""

from __future__ import annotations

import hashlib
import re

from converged_bridge import wire

FIELD_MANAGER = wire.DAEMON_FIELD_MANAGER

LABEL_CLUSTER = wire.SLURM_CLUSTER_LABEL
LABEL_PARTITION = wire.SLURM_PARTITION_LABEL
LABEL_NODE_KIND = wire.NODE_KIND_LABEL
LABEL_MANAGED_BY = wire.MANAGED_BY_LABEL
ANNOTATION_PARTITION = wire.SLURM_PARTITION_ANNOTATION  # the partition's exact Slurm name
TAINT_KEY = wire.SLURM_TAINT_KEY
NODE_KIND = "slurm"
MANAGED_BY = FIELD_MANAGER
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"

RESOURCE_GPU = wire.GPU_RESOURCE
RESOURCE_SLURM_NODES = wire.SLURM_NODES_RESOURCE
GPU_MODEL_PREFIX = wire.GPU_MODEL_RESOURCE_PREFIX
UNTYPED_GPU = "gpu"  # the capacity snapshot's key for GPUs without a model

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _dns_piece(text: str) -> str:
    """`text` as a DNS label piece; a short hash keeps distinct names distinct when characters change."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "x"
    if cleaned == text and len(cleaned) <= 40:
        return cleaned
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{cleaned[:33].strip('-')}-{digest}"


def object_name(cluster: str, partition: str) -> str:
    """The virtual Node's and the ResourceFlavor's name: `slurm-<cluster>-<partition>`."""
    return f"slurm-{_dns_piece(cluster)}-{_dns_piece(partition)}"


def cluster_queue_name(cluster: str, configured: str | None) -> str:
    return configured or f"slurm-{_dns_piece(cluster)}"


def label_value(text: str) -> str:
    """`text` as a label value (<= 63 characters, alphanumeric at both ends)."""
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    return _dns_piece(text)


def gpu_model_resource(model: str) -> str | None:
    """The extended resource of one GPU model (`converged.dev/gpu-a100`); None for untyped GPUs."""
    if model == UNTYPED_GPU:
        return None
    return GPU_MODEL_PREFIX + _dns_piece(model)


def is_dns_label(text: str) -> bool:
    return bool(_DNS_LABEL.match(text))
