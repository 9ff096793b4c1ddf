"""Names, labels and resource names of the objects the daemon mirrors a Slurm cluster into (pure)."""

from __future__ import annotations

import hashlib
import re

FIELD_MANAGER = "converged-daemon"

LABEL_CLUSTER = "converged.dev/slurm-cluster"
LABEL_PARTITION = "converged.dev/slurm-partition"
LABEL_NODE_KIND = "converged.dev/node-kind"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
ANNOTATION_PARTITION = "converged.dev/slurm-partition-name"  # the partition's exact Slurm name
TAINT_KEY = "converged.dev/slurm"
NODE_KIND = "slurm"
MANAGED_BY = FIELD_MANAGER
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"

RESOURCE_GPU = "nvidia.com/gpu"
RESOURCE_SLURM_NODES = "converged.dev/slurm-nodes"
GPU_MODEL_PREFIX = "converged.dev/gpu-"
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
