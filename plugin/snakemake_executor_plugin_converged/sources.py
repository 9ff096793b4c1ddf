"""Where snakemake keeps the copies of sources a step waits for, so that the step can see them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def share_runtime_source_cache(workflow: Any, working_dir: str) -> Path | None:
    """Move snakemake's runtime source cache into the workflow directory (on the shared filesystem).

    snakemake copies a source it cannot cache for good (a `wrapper:` given as a local file or file://
    URL) into a temporary directory under the submitter's `~/.cache`, and a remote step waits for that
    copy (`--wait-for-files`) before it starts. A pod, or a Slurm node without the submitter's home,
    never sees it: the step's snakemake gives up waiting and its output is missing. Here the copies go
    to `.snakemake/converged/runtime-source-cache/`, which every step sees. Returns the directory, or
    None when this snakemake keeps its cache differently (then nothing is changed)."""
    cache = getattr(workflow, "sourcecache", None)
    if cache is None or not hasattr(cache, "_runtime_cache_path"):
        return None
    path = Path(working_dir) / ".snakemake" / "converged" / "runtime-source-cache"
    os.makedirs(path, exist_ok=True)
    cache._runtime_cache_path = path
    return path
