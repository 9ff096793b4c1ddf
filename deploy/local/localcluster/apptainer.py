"""Apptainer on the Slurm nodes: the runtime the local SlurmCluster runs steps with, as sites do.

Built from source by build-apptainer.sh (non-setuid: unprivileged user namespaces), installed as a
prefix in the cache. What running it needs here, each handled below:
- on the jobs' PATH: Slurm jobs submitted with --export=NONE get a default PATH, so `apptainer` is
  linked into /usr/local/bin (and `/usr/bin` stays Debian's);
- the step image as a SIF, built from the same tree the real node and charliecloud use (same recipe,
  same tag), cached beside it;
- a SIF is mounted with squashfuse by unprivileged users, through /dev/fuse: this VM runs no udev, so
  /dev/fuse stays 0600 unless made 0666 as Debian's udev rule does (without it: "fuse: failed to open
  /dev/fuse: Permission denied"; `--unsquash` would work at ~3.5 s per start instead of ~0.2 s);
- per-user cache and temporary directories: not needed to run a SIF or a directory (no conversion);
- `--nv` on the g1 node, whose GPUs are plain files with no driver: Apptainer continues silently.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

from . import images, procs
from .layout import Layout
from .procs import ClusterError

LINK = Path("/usr/local/bin/apptainer")
FUSE = Path("/dev/fuse")


def binary(layout: Layout) -> Path:
    return layout.bin("apptainer", "bin/apptainer")


def sif_path(layout: Layout) -> Path:
    """The step image as a SIF, in the step image's cache directory (rebuilt with its recipe)."""
    return images.step(layout).dir / "step.sif"


def stable_sif(layout: Layout) -> Path:
    """A stable path to the current step SIF, on a path every Slurm node sees."""
    return layout.root / "images" / "step.sif"


def ensure_sif(layout: Layout) -> Path:
    sif = sif_path(layout)
    if not sif.exists():
        rootfs = images.step(layout).rootfs
        tmp = sif.with_suffix(".sif.tmp")
        tmp.unlink(missing_ok=True)
        start = time.monotonic()
        procs.run([str(binary(layout)), "--silent", "build", str(tmp), str(rootfs)], timeout=900)
        tmp.chmod(0o644)
        os.replace(tmp, sif)
        (sif.parent / "sif-built").write_text(f"{time.monotonic() - start:.1f}s\n")
    link = stable_sif(layout)
    link.parent.mkdir(parents=True, exist_ok=True)
    if not (link.is_symlink() and link.resolve() == sif.resolve()):
        tmp_link = link.with_name(".step.sif.tmp")
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(sif)
        os.replace(tmp_link, link)
    return link


def up(layout: Layout) -> None:
    if not binary(layout).exists():
        raise ClusterError(f"apptainer is not built at {binary(layout)} (cluster build makes it)")
    if not (LINK.is_symlink() and LINK.resolve() == binary(layout).resolve()):
        LINK.unlink(missing_ok=True)
        LINK.symlink_to(binary(layout))
    if FUSE.exists() and stat.S_IMODE(FUSE.stat().st_mode) != 0o666:
        FUSE.chmod(0o666)
    ensure_sif(layout)


def down(layout: Layout) -> None:
    """Nothing runs: the binary and the SIF stay."""


def probe(layout: Layout, user: str = "nobody", group: str = "nogroup") -> tuple[bool, str]:
    """Run the SIF as an unprivileged user, as a Slurm step would."""
    sif = stable_sif(layout)
    if not sif.exists():
        return False, f"{sif} missing (cluster up builds it)"
    cp = procs.run(
        [
            "setpriv",
            f"--reuid={user}",
            f"--regid={group}",
            "--init-groups",
            "--",
            "apptainer",
            "--silent",
            "exec",
            "--no-eval",
            "--cleanenv",
            str(sif),
            "python3",
            "-c",
            "import os, snakemake; print(snakemake.__version__, os.environ.get('APPTAINER_CONTAINER'))",
        ],
        check=False,
        timeout=60,
        cwd="/tmp",
    )
    if cp.returncode != 0:
        return False, f"apptainer exec failed: {cp.stderr.strip()[-200:]}"
    return True, cp.stdout.strip()


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    if shutil.which("apptainer") is None:
        return [("apptainer", False, "not on PATH")]
    ok, detail = probe(layout)
    version = layout.versions["APPTAINER_VERSION"]
    return [("apptainer", ok, f"{version}; {stable_sif(layout)} as nobody: {detail}" if ok else detail)]


def env(layout: Layout) -> dict[str, str]:
    return {
        "CONVERGED_SLURM_CONTAINER_RUNTIME": "apptainer",
        "CONVERGED_STEP_IMAGE_SIF": str(stable_sif(layout)),
        "CONVERGED_SLURM_IMAGE": str(stable_sif(layout)),  # what the Slurm side runs steps in
    }
