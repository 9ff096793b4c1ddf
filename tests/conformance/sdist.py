"""Snakemake's source distribution, fetched once per version into a cache, and its test workflows."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

PIP_DOWNLOAD = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "converged" / "snakemake-sdist"


def fetch_snakemake_tests(version: str, cache: Path) -> Path:
    """snakemake `version`'s tests/ directory, unpacked from its source distribution (pip download,
    once: the cache holds one directory per version)."""
    here = cache / version
    tests = here / f"snakemake-{version}" / "tests"
    if tests.is_dir():
        return tests
    here.mkdir(parents=True, exist_ok=True)
    archive = here / f"snakemake-{version}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [*PIP_DOWNLOAD, f"snakemake=={version}", "-d", str(here)],
            check=True,
            timeout=600,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(here, filter="data")
    if not tests.is_dir():
        raise RuntimeError(f"{archive} holds no snakemake-{version}/tests")
    return tests


def find_workflows(tests: Path) -> list[Path]:
    """The test workflows: folders test* with a Snakefile and an expected-results/ folder, by name."""
    return sorted(
        d
        for d in tests.iterdir()
        if d.name.startswith("test")
        and d.is_dir()
        and (d / "Snakefile").is_file()
        and (d / "expected-results").is_dir()
    )
