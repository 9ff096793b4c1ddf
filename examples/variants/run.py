"""Run the variant-calling example on the local converged cluster as alice, each tool in its own image.

1. As alice, build one small image per tool (its Debian package's executables, their shared libraries
   and busybox; examples/variants/Containerfile) with rootless buildah and push it to the site registry
   under her name; an image whose tag (the hash of its recipe) is already there is not built again.
2. In a new directory of hers on the shared filesystem: `snakemake --executor converged --sdm apptainer`
   with the images' names as config, no converged flags: the bwa and bcftools-call steps run on Slurm
   under Apptainer, the samtools steps and the final count on Kubernetes, each in its own image.

Usage: .venv/bin/python examples/variants/run.py [--user alice] [--jobs 8]
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from site_run import as_user, cluster_env, parse_args, run_example, say

HERE = Path(__file__).resolve().parent
# Image name -> (Debian package, executables copied into the image).
TOOLS = {"bwa": ("bwa", "bwa"), "samtools": ("samtools", "samtools"), "bcftools": ("bcftools", "bcftools")}


def recipe_tag(package: str, executables: str) -> str:
    recipe = (HERE / "Containerfile").read_bytes() + f"\0{package}\0{executables}".encode()
    return hashlib.sha256(recipe).hexdigest()[:12]


def build_images(registry: str, user: str, workdir: Path) -> dict[str, str]:
    """Each tool's image as `user`, in `workdir` (hers), pushed under her name unless its tag is already
    in the registry; name -> docker:// reference."""
    as_user(user, workdir.parent, f"mkdir -p {shlex.quote(workdir.name)}")
    shutil.copy(HERE / "Containerfile", workdir / "Containerfile")
    shutil.chown(workdir / "Containerfile", user, user)
    images = {}
    for name, (package, executables) in TOOLS.items():
        ref = f"{registry}/{user}/{name}:{recipe_tag(package, executables)}"
        images[name] = f"docker://{ref}"
        inspect = f"skopeo inspect --no-creds docker://{ref} >/dev/null 2>&1"
        if as_user(user, workdir, inspect).returncode == 0:
            say(f"{ref}: already in the registry")
            continue
        say(f"as {user}: buildah bud {ref} (package {package}), then buildah push")
        started = time.monotonic()
        build = (
            f"buildah bud --quiet --network host --build-arg PACKAGE={shlex.quote(package)}"
            f" --build-arg EXECUTABLES={shlex.quote(executables)} -t {ref}"
            " ."
        )
        if as_user(user, workdir, f"{build} && buildah push --quiet {ref}").returncode != 0:
            raise SystemExit(f"building or pushing {ref} failed")
        print(f"built and pushed in {time.monotonic() - started:.0f} s", flush=True)
    return images


def main() -> int:
    args = parse_args(__doc__)
    env = cluster_env()
    context = Path(env["CONVERGED_SHARED_DIR"]) / "users" / args.user / "variants-images"
    images = build_images(env["CONVERGED_REGISTRY"], args.user, context)
    config = " ".join(f"{name}={ref}" for name, ref in images.items())
    started = time.monotonic()
    flags = f"--sdm apptainer --config {config}"
    rc, _ = run_example("variants", "variants.txt", args.user, args.jobs, flags)
    say(f"workflow wall time: {time.monotonic() - started:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
