"""The step image and the pause image, built on this machine with no registry.

- step: `debootstrap --variant=minbase` of Debian bookworm plus the packages in
  images/step/debian-packages.txt (Python, OpenMPI, sshd, LAMMPS), the files under images/step/overlay/
  copied over it, then `python3 -m pip install -r images/step/requirements.txt` (snakemake) with the
  image's own Python. Runs every Kubernetes-routed step on the real node, and
  every Slurm-routed step through charliecloud (`ch-run` on the unpacked directory).
- pause: images/pause/pause.c compiled with `gcc -static`; containerd's sandbox image.

Each image is cached under <cache>/images/<name>-<recipe hash>/ (the OCI archive `image.tar`, the
unpacked `rootfs/`, the build log) and rebuilt only when a file of its recipe directory (or FORMAT
below) changes. It is imported into the real node's containerd as
localhost/converged/<name>:<recipe hash> and localhost/converged/<name>:local.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import containerd, mounts, oci, packages, procs
from .layout import HERE, Layout
from .procs import ClusterError

RECIPES = HERE / "images"
REGISTRY = "localhost/converged"
STABLE_TAG = "local"
FORMAT = "3"  # part of every recipe hash: bump it when the way images are built or packed changes
SUITE = "bookworm"
PAUSE_MTIME = 946684800  # 2000-01-01T00:00:00Z, every file of the pause image
VARIANT = "minbase"
MIRROR_ENV = "CONVERGED_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# rsync: snakemake's fs storage provider runs it, in the step image and in the main snakemake process
PACKAGES = ["debootstrap", "gcc", "libc6-dev", "charliecloud-runtime", "rsync"]
STEP_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
# what the image's pip may need from the host to reach PyPI (a proxy, a mirror, a private CA)
PIP_PASSTHROUGH = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_DEFAULT_TIMEOUT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


def recipe_hash(name: str, files: dict[str, bytes]) -> str:
    """Hash of an image's recipe: its name, FORMAT, the suite, and every recipe file (path + bytes)."""
    h = hashlib.sha256(f"{name}\0{FORMAT}\0{SUITE}\0{VARIANT}\0".encode())
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest())
    return h.hexdigest()[:16]


def read_recipe(name: str) -> dict[str, bytes]:
    base = RECIPES / name
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


@dataclass(frozen=True)
class Image:
    name: str
    tag: str  # the recipe hash
    dir: Path  # <cache>/images/<name>-<tag>

    @property
    def ref(self) -> str:
        return f"{REGISTRY}/{self.name}:{self.tag}"

    @property
    def stable_ref(self) -> str:
        return f"{REGISTRY}/{self.name}:{STABLE_TAG}"

    @property
    def archive(self) -> Path:
        return self.dir / "image.tar"

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def built(self) -> bool:
        return (self.dir / "built").exists()


def image(layout: Layout, name: str) -> Image:
    tag = recipe_hash(name, read_recipe(name))
    return Image(name, tag, layout.cache / "images" / f"{name}-{tag}")


def step(layout: Layout) -> Image:
    return image(layout, "step")


def pause(layout: Layout) -> Image:
    return image(layout, "pause")


def directory_image(layout: Layout) -> Path:
    """Stable path of the unpacked step image, readable by every Slurm node (for ch-run)."""
    return layout.root / "images" / "step"


# ---------------------------------------------------------------- building


def _log(layout: Layout, name: str) -> Path:
    return procs.log_path(layout, f"image-{name}")


def run_logged(layout: Layout, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    log = _log(layout, name)
    with open(log, "ab") as f:
        f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        f.flush()
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env)
    if cp.returncode != 0:
        raise ClusterError(f"building image {name}: {argv[0]} failed ({cp.returncode}); see {log}")


def host_ca_bundle() -> Path | None:
    for candidate in (
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        ssl.get_default_verify_paths().cafile,
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _build_step_rootfs(layout: Layout, rootfs: Path, recipe: dict[str, bytes]) -> None:
    include = [
        ln.strip()
        for ln in recipe["debian-packages.txt"].decode().splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]
    overlay = {
        rel.removeprefix("overlay/"): data for rel, data in recipe.items() if rel.startswith("overlay/")
    }
    mirror = os.environ.get(MIRROR_ENV, DEFAULT_MIRROR)
    try:
        run_logged(
            layout,
            "step",
            [
                "debootstrap",
                f"--variant={VARIANT}",
                f"--include={','.join(include)}",
                SUITE,
                str(rootfs),
                mirror,
            ],
        )
    finally:
        mounts.unmount_under(rootfs)
    for rel, data in sorted(overlay.items()):
        target = rootfs / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o644)
    # pip runs inside the image (its own Python, its own site-packages) with the host's DNS and CA bundle
    shutil.copyfile("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
    (rootfs / "tmp" / "requirements.txt").write_bytes(recipe["requirements.txt"])
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    env.update({k: os.environ[k] for k in PIP_PASSTHROUGH if k in os.environ})
    ca = host_ca_bundle()
    if ca is not None:
        shutil.copyfile(ca, rootfs / "tmp" / "host-ca.pem")
        env["PIP_CERT"] = "/tmp/host-ca.pem"
    pip = ["chroot", str(rootfs), "python3", "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    install = ["install", "--root-user-action=ignore", "--break-system-packages", "--no-warn-script-location"]
    run_logged(layout, "step", [*pip, *install, "-r", "/tmp/requirements.txt"], env=env)
    frozen = procs.run([*pip, "freeze"], env=env).stdout
    (rootfs.parent / "pip-freeze.txt").write_text(frozen)
    scrub(rootfs)
    dropped = drop_setuid(rootfs)
    (rootfs.parent / "setuid-dropped.txt").write_text("".join(f"{p}\n" for p in dropped))


def drop_setuid(rootfs: Path) -> list[str]:
    """Clear every setuid and setgid bit under `rootfs` (su, mount, passwd, ...; none is of use in a
    step, and a step gains nothing from one anyway: Kubernetes runs it with no_new_privs, Pod Security
    `restricted`, as Apptainer does). Returns the paths changed, relative to `rootfs`."""
    changed = []
    for path in sorted(rootfs.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        mode = path.stat().st_mode
        if mode & (stat.S_ISUID | stat.S_ISGID):
            path.chmod(stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))
            changed.append(str(path.relative_to(rootfs)))
    return changed


def scrub(rootfs: Path) -> None:
    """Leave no host state and no package caches in the image."""
    (rootfs / "etc" / "resolv.conf").write_text("")  # every runtime mounts its own
    (rootfs / "etc" / "hostname").write_text("step\n")
    for d in ("tmp", "var/tmp", "root/.cache", "var/cache/apt/archives", "var/lib/apt/lists"):
        path = rootfs / d
        if not path.is_dir():
            continue
        for entry in path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                if entry.name != "partial":
                    shutil.rmtree(entry)
            elif entry.name != "lock":
                entry.unlink()
    for cache in (rootfs / "var" / "cache" / "apt").glob("*.bin"):
        cache.unlink()
    env_file = rootfs / "ch" / "environment"  # what `ch-run --set-env` reads (charliecloud's convention)
    env_file.parent.mkdir(exist_ok=True)
    env_file.write_text("\n".join(STEP_ENV) + "\n")


def _build_pause_rootfs(rootfs: Path) -> None:
    """/pause and the mount points a runtime needs, all with one fixed mtime: with gcc's output
    being reproducible, so is this image, digest for digest."""
    rootfs.mkdir(parents=True)
    for d in ("dev", "proc", "sys", "etc"):
        (rootfs / d).mkdir()
    src = RECIPES / "pause" / "pause.c"
    procs.run(["gcc", "-static", "-Os", "-s", "-Wall", "-Werror", "-o", str(rootfs / "pause"), str(src)])
    for path in (rootfs, *rootfs.iterdir()):
        os.utime(path, (PAUSE_MTIME, PAUSE_MTIME))


def _spec(name: str, tag: str) -> oci.ImageSpec:
    labels = {"dev.converged.image": name, "dev.converged.recipe": tag}
    if name == "pause":
        return oci.ImageSpec(env=("PATH=/",), entrypoint=("/pause",), labels=labels)
    return oci.ImageSpec(env=STEP_ENV, cmd=("/bin/bash",), labels=labels)


def ensure_built(layout: Layout, name: str) -> Image:
    """Build image `name` unless its recipe's build is cached; returns it."""
    img = image(layout, name)
    if img.built:
        return img
    packages.ensure(PACKAGES)
    start = time.monotonic()
    tmp = img.dir.with_name(img.dir.name + ".tmp")
    if tmp.exists():  # an interrupted build: never rm -rf through a chroot's /proc
        mounts.unmount_under(tmp)
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    recipe = read_recipe(name)
    rootfs = tmp / "rootfs"
    if name == "step":
        _build_step_rootfs(layout, rootfs, recipe)
    else:
        _build_pause_rootfs(rootfs)
    digest = oci.write_archive(rootfs, _spec(name, img.tag), [img.ref, img.stable_ref], tmp / "image.tar")
    (tmp / "manifest-digest").write_text(digest + "\n")
    (tmp / "built").write_text(f"{time.monotonic() - start:.1f}s\n")
    tmp.rename(img.dir)
    prune(img)
    return img


def prune(current: Image) -> None:
    """Remove cached builds of older recipes of the same image."""
    for old in current.dir.parent.glob(f"{current.name}-*"):
        if old != current.dir and old.is_dir():
            mounts.unmount_under(old)
            shutil.rmtree(old)


def build_all(layout: Layout) -> list[Image]:
    layout.ensure()
    return [ensure_built(layout, "pause"), ensure_built(layout, "step")]


# ---------------------------------------------------------------- importing and exposing


def read_refs(layout: Layout) -> dict[str, str]:
    """{reference: manifest digest} of every image in the real node's containerd."""
    listing = containerd.ctr(layout, "images", "ls")
    return {fields[0]: fields[2] for ln in listing.splitlines()[1:] if len(fields := ln.split()) > 2}


def imported(layout: Layout, img: Image) -> bool:
    """Both of the image's references are in containerd and name the manifest we built."""
    digest = (img.dir / "manifest-digest").read_text().strip()
    refs = read_refs(layout)
    return refs.get(img.ref) == digest and refs.get(img.stable_ref) == digest


def ensure_imported(layout: Layout, img: Image) -> None:
    """Import the image unless it is there; drop the references of its older recipes."""
    if not imported(layout, img):
        containerd.ctr(layout, "images", "import", str(img.archive), timeout=600)
    refs = read_refs(layout)
    repository = f"{REGISTRY}/{img.name}:"
    stale = [r for r in refs if r.startswith(repository) and r not in (img.ref, img.stable_ref)]
    named = {digest for r, digest in refs.items() if not r.startswith("sha256:") and r not in stale}
    # the CRI plugin also names each image by its id (sha256:<config>); drop those no name points to
    stale += [r for r, digest in refs.items() if r.startswith("sha256:") and digest not in named]
    if stale:
        containerd.ctr(layout, "images", "rm", *stale)


def expose_directory_image(layout: Layout, img: Image) -> Path:
    """Point directory_image() at the step image's rootfs and give it the shared directory's mount
    point: ch-run binds into a read-only image and cannot create one itself."""
    (img.rootfs / layout.shared.relative_to("/")).mkdir(parents=True, exist_ok=True)
    link = directory_image(layout)
    link.parent.mkdir(parents=True, exist_ok=True)
    if not (link.is_symlink() and link.resolve() == img.rootfs.resolve()):
        tmp = link.with_name(".step.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(img.rootfs)
        os.replace(tmp, link)
    return link


def up(layout: Layout) -> None:
    """Build (cached), import into containerd (if missing), expose the directory image."""
    built = build_all(layout)
    for img in built:
        ensure_imported(layout, img)
    expose_directory_image(layout, step(layout))


def down(layout: Layout) -> None:
    """Images stay cached and imported; containerd's own down stops what runs them."""


def probe_charliecloud(layout: Layout) -> tuple[bool, str]:
    directory = directory_image(layout)
    cp = procs.run(
        [
            "ch-run",
            "--set-env",
            str(directory),
            "--",
            "python3",
            "-c",
            "import snakemake; print(snakemake.__version__)",
        ],
        check=False,
        env={"USER": os.environ.get("USER", "root")},
        timeout=60,
    )
    if cp.returncode != 0:
        return False, f"ch-run failed: {cp.stderr.strip()[-200:]}"
    return True, f"snakemake {cp.stdout.strip()}"


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    img, sandbox = step(layout), pause(layout)
    if not (img.built and sandbox.built):
        return [("step image", False, "not built (cluster up builds it)")]
    try:
        in_containerd = imported(layout, img) and imported(layout, sandbox)
    except (ClusterError, OSError) as e:
        return [("step image", False, f"containerd: {e}")]
    if not in_containerd:
        return [("step image", False, f"{img.ref} or {sandbox.ref} not in containerd")]
    ok, detail = probe_charliecloud(layout)
    return [("step image", ok, f"{img.ref}; ch-run {directory_image(layout)}: {detail}")]


def env(layout: Layout) -> dict[str, str]:
    """The step image as each side runs it: by reference on the real node; on Slurm as a SIF (Apptainer,
    apptainer.env) or as the unpacked directory (charliecloud)."""
    return {
        "CONVERGED_STEP_IMAGE": step(layout).ref,
        "CONVERGED_STEP_IMAGE_DIR": str(directory_image(layout)),
    }
