"""The converged-daemon image, built here by the project's own OCI code (no registry, no Docker).

The recipe is deploy/kubernetes/Containerfile, the file a site builds the image from with podman or
docker, and this repository's wheel: Debian bookworm (minbase) with python3 and pip, the wheel and its
dependencies installed from PyPI, user 10001, and the image config (ENV, USER, WORKDIR, ENTRYPOINT) read
from the Containerfile itself. Cached by the hash of both; imported into the real node's containerd as
localhost/converged/daemon:<hash> and :local.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import images, mounts, oci, package, packages
from .layout import HERE, Layout

CONTAINERFILE = HERE.parent / "kubernetes" / "Containerfile"
NAME = "daemon"
INCLUDE = ("python3", "python3-pip", "ca-certificates")


@dataclass(frozen=True)
class ContainerConfig:
    """What the Containerfile says the image's config is."""

    env: tuple[str, ...]
    user: str | None
    working_dir: str
    entrypoint: tuple[str, ...]


def parse_containerfile(text: str) -> ContainerConfig:
    """ENV, USER, WORKDIR (the last) and ENTRYPOINT (exec form) of a Containerfile (pure)."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    env: dict[str, str] = {}
    user, workdir, entrypoint = None, "/", ()
    for line in joined.splitlines():
        words = line.strip().split(None, 1)
        if len(words) < 2:
            continue
        instruction, rest = words[0].upper(), words[1].strip()
        if instruction == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
        elif instruction == "USER":
            user = rest
        elif instruction == "WORKDIR":
            workdir = rest
        elif instruction == "ENTRYPOINT":
            entrypoint = tuple(json.loads(rest))
    return ContainerConfig(tuple(f"{k}={v}" for k, v in env.items()), user, workdir, entrypoint)


def recipe_tag(wheel_hash: str) -> str:
    h = hashlib.sha256(f"{NAME}\0{images.FORMAT}\0{images.SUITE}\0".encode())
    h.update(CONTAINERFILE.read_bytes() + b"\0" + wheel_hash.encode())
    return h.hexdigest()[:16]


def image(layout: Layout) -> images.Image:
    tag = recipe_tag(package.source_hash())
    return images.Image(NAME, tag, layout.cache / "images" / f"{NAME}-{tag}")


def _build_rootfs(layout: Layout, rootfs: Path, wheel: Path) -> None:
    mirror = os.environ.get(images.MIRROR_ENV, images.DEFAULT_MIRROR)
    try:
        images.run_logged(
            layout,
            NAME,
            [
                "debootstrap",
                f"--variant={images.VARIANT}",
                f"--include={','.join(INCLUDE)}",
                images.SUITE,
                str(rootfs),
                mirror,
            ],
        )
    finally:
        mounts.unmount_under(rootfs)
    shutil.copyfile("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
    shutil.copyfile(wheel, rootfs / "tmp" / wheel.name)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    env.update({k: os.environ[k] for k in images.PIP_PASSTHROUGH if k in os.environ})
    ca = images.host_ca_bundle()  # a site's proxy may re-sign PyPI's certificates: trust what the host does
    if ca is not None:
        shutil.copyfile(ca, rootfs / "tmp" / "host-ca.pem")
        env["PIP_CERT"] = "/tmp/host-ca.pem"
    pip = ["chroot", str(rootfs), "python3", "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    install = ["install", "--root-user-action=ignore", "--break-system-packages", "--no-warn-script-location"]
    images.run_logged(layout, NAME, [*pip, *install, f"/tmp/{wheel.name}"], env=env)
    # the Containerfile's user: a system account with no home and no shell
    images.run_logged(
        layout,
        NAME,
        [
            "chroot",
            str(rootfs),
            "sh",
            "-c",
            "groupadd --system --gid 10001 converged && useradd --system --uid 10001 --gid converged "
            "--home-dir /nonexistent --shell /usr/sbin/nologin converged",
        ],
    )
    images.scrub(rootfs)


def ensure_built(layout: Layout) -> images.Image:
    img = image(layout)
    if img.built:
        return img
    packages.ensure(images.PACKAGES)
    start = time.monotonic()
    wheel = package.wheel(layout)
    tmp = img.dir.with_name(img.dir.name + ".tmp")
    if tmp.exists():
        mounts.unmount_under(tmp)
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    _build_rootfs(layout, tmp / "rootfs", wheel)
    config = parse_containerfile(CONTAINERFILE.read_text())
    spec = oci.ImageSpec(
        env=config.env or ("PATH=/usr/local/bin:/usr/bin:/bin",),
        entrypoint=config.entrypoint,
        working_dir=config.working_dir,
        user=config.user,
        labels={"dev.converged.image": NAME, "dev.converged.recipe": img.tag},
    )
    digest = oci.write_archive(tmp / "rootfs", spec, [img.ref, img.stable_ref], tmp / "image.tar")
    (tmp / "manifest-digest").write_text(digest + "\n")
    (tmp / "built").write_text(f"{time.monotonic() - start:.1f}s\n")
    tmp.rename(img.dir)
    images.prune(img)
    return img


def up(layout: Layout) -> images.Image:
    img = ensure_built(layout)
    images.ensure_imported(layout, img)
    return img
