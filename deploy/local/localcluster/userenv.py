"""A Python environment for the site's users, as a site installs software for them: Debian's python3,
a venv with snakemake and this package (its wheel, so users need no access to this checkout), and
`snakemake`, `kubectl` and `kubectl-converged` on every user's PATH (/usr/local/bin).

Rebuilt when the package's sources change (only the package is reinstalled); the first install takes
snakemake and its dependencies from PyPI.
"""

from __future__ import annotations

from pathlib import Path

from . import package, packages, procs
from .layout import Layout

PACKAGES = ["python3-venv"]
BIN = Path("/usr/local/bin")
COMMANDS = ("snakemake", "kubectl-converged")


def venv_dir(layout: Layout) -> Path:
    return layout.root / "userenv"


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    link.unlink(missing_ok=True)
    link.symlink_to(target)


def up(layout: Layout) -> None:
    packages.ensure(PACKAGES)
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
