"""This repository's package (bridge, daemon, plugin) as a wheel, keyed by a hash of its sources: what
the daemon image and the site's Python environment install, rebuilt only when a source changed."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from . import procs
from .layout import HERE, Layout
from .procs import ClusterError

REPO = HERE.parents[1]
SOURCES = ("pyproject.toml", "README.md", "bridge", "resource_daemon", "plugin")


def source_files(repo: Path = REPO) -> list[Path]:
    """Every file the wheel is built from (pyproject's hatch targets), sorted."""
    out: list[Path] = []
    for entry in SOURCES:
        path = repo / entry
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out += [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sorted(out)


def source_hash(repo: Path = REPO) -> str:
    h = hashlib.sha256()
    for path in source_files(repo):
        h.update(str(path.relative_to(repo)).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def wheel(layout: Layout) -> Path:
    """The wheel of the current sources, built once per source hash under <cache>/wheels/."""
    tag = source_hash()
    out = layout.cache / "wheels" / f"converged-{tag}"
    found = sorted(out.glob("*.whl")) if out.is_dir() else []
    if found:
        return found[0]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    procs.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp), str(REPO)],
        timeout=600,
    )
    wheels = sorted(tmp.glob("converged-*.whl"))
    if not wheels:
        raise ClusterError(f"pip wheel made no converged wheel in {tmp}")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    for old in out.parent.glob("converged-*"):
        if old != out and old.is_dir():
            shutil.rmtree(old)
    return out / wheels[0].name
