"""A run's results against expected-results/, as snakemake's own tests compare them (tests/common.py
`run()` and `get_expected_files()`): every file its `glob("**/**")` finds under expected-results/
(hidden ones are not found; not the Windows-only `*_WIN` ones) must exist in the workflow directory
with the same MD5 of its content, leading and trailing whitespace stripped. Directories are not compared.
"""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path


def expected_files(expected: Path) -> list[str]:
    """The files snakemake's run() compares, relative to `expected` (its glob finds a file in a
    subfolder twice; it is compared once)."""
    found = glob.iglob(os.path.join(glob.escape(str(expected)), "**/**"), recursive=True)
    return sorted(
        {
            os.path.relpath(f, expected)
            for f in found
            if os.path.isfile(f) and not f.endswith("_WIN") and os.path.relpath(f, expected) not in IGNORED
        }
    )


IGNORED = frozenset({".gitignore", ".gitkeep"})


def content_md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes().strip(), usedforsecurity=False).hexdigest()


def compare_results(expected: Path, workdir: Path) -> list[str]:
    """What differs from `expected` in `workdir` (a file missing or different), [] when all match."""
    problems = []
    for name in expected_files(expected):
        found = workdir / name
        if not found.is_file():
            problems.append(f"expected file {name!r} not produced")
        elif content_md5(found) != content_md5(expected / name):
            problems.append(f"wrong result produced for file {name!r}")
    return problems
