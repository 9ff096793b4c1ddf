"""The site's defaults for a namespace's runs: ConfigMap `converged-site` in the namespace, written by
the site admin (users may read it, not change it). With it a user runs `snakemake --executor converged`
with no converged flags: the images each side runs, the LocalQueue, the shared filesystem.

A flag (or a profile) given by the user wins over the site's value. Pure: the ConfigMap's data in,
settings out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

CONFIGMAP = "converged-site"
# ConfigMap key -> the executor setting it fills (only when the user left the setting unset)
KEYS = {
    "image": "image",
    "slurmImage": "slurm_image",
    "localQueue": "local_queue",
    "sharedPaths": "shared_paths",
    "slurmCluster": "slurm_cluster",
    "defaultBackend": "default_backend",
}
BOOL_KEYS = {"rightSize": "right_size"}  # "true"/"false" (also yes/no, 1/0)
_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})


@dataclass(frozen=True)
class SiteDefaults:
    """What the site says about runs in one namespace; None: the site says nothing."""

    image: str | None = None
    slurm_image: str | None = None
    local_queue: str | None = None
    # comma-separated PATH[=CLAIM]: directories every backend sees at the same path (pods through the
    # namespace's claim CLAIM, default converged-shared)
    shared_paths: str | None = None
    slurm_cluster: str | None = None
    default_backend: str | None = None
    right_size: bool | None = None
    # not a setting: the uid the site's deployed controller runs as (ConfigMap key controllerUid); it
    # must write the workflow directory to hand steps to their allocations
    controller_uid: int | None = None

    @property
    def shared_dirs(self) -> tuple[str, ...]:
        entries = (e.partition("=")[0].strip() for e in (self.shared_paths or "").split(","))
        return tuple(p.rstrip("/") or "/" for p in entries if p)


def parse_site_defaults(configmap: Mapping[str, Any] | None) -> SiteDefaults:
    """The defaults in a `converged-site` ConfigMap (None or no data: none); unknown keys are ignored."""
    data = (configmap or {}).get("data") or {}
    values: dict[str, Any] = {
        attr: str(data[key]).strip() for key, attr in KEYS.items() if str(data.get(key) or "").strip()
    }
    values.update({attr: _flag(data.get(key)) for key, attr in BOOL_KEYS.items()})
    uid = str(data.get("controllerUid") or "").strip()
    return SiteDefaults(**values, controller_uid=int(uid) if uid.isdigit() else None)


def _flag(value: Any) -> bool | None:
    text = str(value or "").strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def merge_site_defaults(settings: Any, site: SiteDefaults, *, unset: Mapping[str, Any]) -> Any:
    """`settings` (the executor's dataclass) with every field the user left at its default (`unset`
    gives the defaults) taken from `site` where the site has a value."""
    changes = {}
    for f in fields(SiteDefaults):
        if f.name not in KEYS.values() and f.name not in BOOL_KEYS.values():
            continue
        value = getattr(site, f.name)
        if value is not None and getattr(settings, f.name) == unset.get(f.name):
            changes[f.name] = value
    return replace(settings, **changes) if changes else settings
