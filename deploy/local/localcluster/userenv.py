"""A Python environment for the site's users, as a site installs software for them: Debian's python3,
a venv with snakemake and this package (its wheel, so users need no access to this checkout), and
`snakemake`, `kubectl` and `kubectl-converged` on every user's PATH (/usr/local/bin).

Rebuilt when the package's sources change (only the package is reinstalled); the first install takes
snakemake and its dependencies from PyPI.

Each user can also build images and push them to the site registry (registry.py) as herself: her
registry credentials in her home (~/.config/containers/auth.json for buildah, podman and skopeo;
~/.apptainer/docker-config.json for Apptainer), and subordinate ids (/etc/subuid, /etc/subgid) for
rootless buildah, given by useradd on Debian and here if a user has none.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from . import package, packages, procs, registry
from .layout import Layout

PACKAGES = ["python3-venv"]
BIN = Path("/usr/local/bin")
COMMANDS = ("snakemake", "kubectl-converged")
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
SUBID_FIRST = 100000
SUBID_COUNT = 65536


def venv_dir(layout: Layout) -> Path:
    return layout.root / "userenv"


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    link.unlink(missing_ok=True)
    link.symlink_to(target)


def plan_subids(subuid: str, subgid: str, users: tuple[str, ...]) -> dict[str, int]:
    """The first subordinate id of each user who lacks a range in either file (pure): after every
    range either file holds, SUBID_COUNT each, the same start for uids and gids."""
    ends = [SUBID_FIRST]
    owners: tuple[set[str], set[str]] = (set(), set())
    for i, text in enumerate((subuid, subgid)):
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            start, _, count = rest.partition(":")
            if start.isdigit() and count.isdigit():
                owners[i].add(name)
                ends.append(int(start) + int(count))
    plan, nxt = {}, max(ends)
    for user in users:
        if user not in owners[0] or user not in owners[1]:
            plan[user], nxt = nxt, nxt + SUBID_COUNT
    return plan


def _subids(users: tuple[str, ...]) -> None:
    subuid, subgid = (f.read_text() if f.exists() else "" for f in SUBID_FILES)
    for user, start in plan_subids(subuid, subgid, users).items():
        ids = f"{start}-{start + SUBID_COUNT - 1}"
        procs.run(["usermod", "--add-subuids", ids, "--add-subgids", ids, user])


def _private(path: Path, text: str, uid: int, gid: int) -> None:
    """`text` in the user's file `path` (0600), its missing directories made hers (0700)."""
    missing = [d for d in reversed(path.parents) if not d.exists()]
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for d in missing:
        os.chown(d, uid, gid)
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chown(tmp, uid, gid)
    tmp.chmod(0o600)
    tmp.replace(path)


def registry_credentials(layout: Layout, users: tuple[str, ...]) -> None:
    """Each user's registry password, in the files her tools read; never anywhere else."""
    site_registry = registry.address(layout)
    for user in users:
        pw = pwd.getpwnam(user)
        auth = registry.build_auth_json(site_registry, user, registry.password(layout, user))
        home = Path(pw.pw_dir)
        for path in (home / ".config/containers/auth.json", home / ".apptainer/docker-config.json"):
            _private(path, auth, pw.pw_uid, pw.pw_gid)


def up(layout: Layout, users: tuple[str, ...]) -> None:
    packages.ensure(PACKAGES)
    _subids(users)
    registry_credentials(layout, users)
    venv = venv_dir(layout)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    if not (venv / "bin" / "python").exists():
        procs.run(["/usr/bin/python3", "-m", "venv", str(venv)])
        procs.run([*pip, "install", "--upgrade", "pip"], timeout=600)
    wheel = package.wheel(layout)
    stamp = venv / "converged-wheel"
    if not stamp.exists() or stamp.read_text().strip() != wheel.name + " " + package.source_hash():
        # the plugin's dependencies first time round; afterwards only the package itself changes
        procs.run(
            [*pip, "install", f"converged[plugin] @ {wheel.as_uri()}", "snakemake-storage-plugin-fs"],
            timeout=1800,
        )
        procs.run([*pip, "install", "--no-deps", "--force-reinstall", str(wheel)], timeout=600)
        stamp.write_text(wheel.name + " " + package.source_hash() + "\n")
    for command in COMMANDS:
        _link(venv / "bin" / command, BIN / command)
    _link(layout.bin("kubernetes", "kubectl"), BIN / "kubectl")


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    snakemake = BIN / "snakemake"
    if not snakemake.exists():
        return [("user environment", False, f"{snakemake} missing (cluster up installs it)")]
    cp = procs.run(
        ["runuser", "-u", "nobody", "--", str(snakemake), "--version"], check=False, cwd="/tmp", timeout=60
    )
    ok = cp.returncode == 0
    return [
        ("user environment", ok, f"snakemake {cp.stdout.strip()} for every user" if ok else cp.stderr[-200:])
    ]
