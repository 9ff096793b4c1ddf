"""Each rule in its own image (issue 23), as a user runs it: alice, in her directory on the shared
filesystem, `snakemake --executor converged --sdm apptainer` with no converged flags but where the steps
go, driven by the site's deployed controller; on Slurm from a local directory image, on Kubernetes from
an image she built and pushed to the site registry.

The rule image here holds busybox and nothing else (no bash, no Python, no snakemake), as published tool
images often do: its rules must still run in it, their log: and outputs must appear, a rule without a
container must keep the site's step image, and a failing command must fail its step with its exit code.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration.test_site import USER, as_user

pytestmark = pytest.mark.integration

SNAKEFILE = """
TOOLS = {tools!r}

rule all:
    input: "counted.txt", "plain.txt"

rule make_words:
    output: "words.txt"
    container: TOOLS
    shell: "echo one two three > {{output}}; command -v python3 >> {{output}} || echo no-python >> {{output}}"

rule count:
    input: "words.txt"
    output: "counted.txt"
    log: "logs/count.log"
    container: TOOLS
    shell:
        "head -1 {{input}} | wc -w > {{output}}; {{{{ busybox 2>&1 || true; }}}} | sed -n 1p > {{log}}; "
        "grep NoNewPrivs /proc/self/status >> {{log}}"

rule plain:
    output: "plain.txt"
    shell: "python3 -c 'import snakemake; print(snakemake.__name__)' > {{output}}"
"""

FAILING = """
rule fails:
    output: "never.txt"
    container: {tools!r}
    shell: "echo about to fail >&2; exit 7"
"""


def install_busybox(bin_dir: Path) -> None:
    """Debian's static busybox and a relative link per applet (`busybox --install -s` links to the
    absolute path it was run from, which does not exist inside the image)."""
    bin_dir.mkdir(parents=True)
    busybox = bin_dir / "busybox"
    shutil.copy(shutil.which("busybox") or "/bin/busybox", busybox)
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout
    for applet in applets.split():
        if applet != "busybox":
            (bin_dir / applet).symlink_to("busybox")


def busybox_image(into: Path) -> Path:
    """A directory image (Apptainer runs it as is) of busybox alone, owned by the user."""
    root = into / "busybox-root"
    install_busybox(root / "bin")
    for d in ("tmp", "etc", "proc", "sys", "dev", "root"):
        (root / d).mkdir(exist_ok=True)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(root)], check=True)
    return root


@pytest.fixture
def run_dir(cluster_env: dict[str, str]) -> Path:
    base = Path(cluster_env["CONVERGED_SHARED_DIR"]) / "users" / USER
    path = base / f"rule-images-{uuid.uuid4().hex[:8]}"
    as_user(USER, f"mkdir {shlex.quote(str(path))}")
    return path


def write(path: Path, text: str) -> None:
    path.write_text(text)
    shutil.chown(path, USER, USER)


def snakemake(run_dir: Path, backend: str, *targets: str) -> subprocess.CompletedProcess[str]:
    return as_user(
        USER,
        "snakemake --executor converged --sdm apptainer -j 4 "
        f"--default-resources converged_backend={backend} {' '.join(targets)}",
        cwd=shlex.quote(str(run_dir)),
    )


def test_on_slurm_rules_run_in_their_own_image_without_snakemake(
    cluster_env: dict[str, str], run_dir: Path
) -> None:
    tools = busybox_image(run_dir)
    write(run_dir / "Snakefile", SNAKEFILE.format(tools=str(tools)))
    done = snakemake(run_dir, "slurm")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert (run_dir / "words.txt").read_text() == "one two three\nno-python\n"
    assert (run_dir / "counted.txt").read_text().strip() == "3"
    log = (run_dir / "logs" / "count.log").read_text().splitlines()
    assert log[0].startswith("BusyBox v1.")
    assert log[1].split() == ["NoNewPrivs:", "1"]  # Apptainer on the node, as alice
    assert (run_dir / "plain.txt").read_text() == "snakemake\n"  # no container: the site's step image
    assert os.stat(run_dir / "counted.txt").st_uid == os.stat(run_dir).st_uid  # written as alice


def pushed_busybox(cluster_env: dict[str, str], into: Path) -> str:
    """alice's busybox-only image, built rootless with buildah and pushed under her name (as the README's
    walk-through does); its docker:// URL."""
    ctx = into / "image"
    install_busybox(ctx / "bin")
    (ctx / "Containerfile").write_text('FROM scratch\nCOPY bin /bin\nCMD ["/bin/sh"]\n')
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(ctx)], check=True)
    ref = f"{cluster_env['CONVERGED_REGISTRY']}/{USER}/busybox:{uuid.uuid4().hex[:8]}"
    for argv in (f"buildah bud --quiet -t {ref} .", f"buildah push --quiet {ref}"):
        done = as_user(USER, argv, cwd=shlex.quote(str(ctx)))
        assert done.returncode == 0, done.stderr
    return f"docker://{ref}"


def test_on_kubernetes_rules_run_in_their_own_image_pulled_from_the_site_registry(
    cluster_env: dict[str, str], run_dir: Path
) -> None:
    tools = pushed_busybox(cluster_env, run_dir)
    write(run_dir / "Snakefile", SNAKEFILE.format(tools=tools))
    done = snakemake(run_dir, "kueue")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert (run_dir / "words.txt").read_text() == "one two three\nno-python\n"
    assert (run_dir / "counted.txt").read_text().strip() == "3"
    log = (run_dir / "logs" / "count.log").read_text().splitlines()
    assert log[0].startswith("BusyBox v1.")
    assert log[1].split() == ["NoNewPrivs:", "1"]  # Pod Security restricted
    assert (run_dir / "plain.txt").read_text() == "snakemake\n"


def test_on_kubernetes_an_image_nobody_pushed_stops_the_run_before_anything_is_submitted(
    cluster_env: dict[str, str], run_dir: Path
) -> None:
    missing = f"docker://{cluster_env['CONVERGED_REGISTRY']}/{USER}/never-pushed:{uuid.uuid4().hex[:8]}"
    rule = f"never_{uuid.uuid4().hex[:8]}"  # no other run has it: its steps would be this run's
    write(run_dir / "Snakefile", FAILING.replace("rule fails:", f"rule {rule}:").format(tools=missing))
    done = snakemake(run_dir, "kueue")
    assert done.returncode != 0
    assert "Failed to pull singularity image" in done.stdout + done.stderr
    steps = as_user(USER, f"kubectl get wfs -o name -l converged.dev/rule={rule}")
    assert steps.returncode == 0 and steps.stdout.strip() == "", steps


def test_on_slurm_a_failing_command_in_a_rule_image_fails_its_step_with_its_exit_code(
    cluster_env: dict[str, str], run_dir: Path
) -> None:
    tools = busybox_image(run_dir)
    write(run_dir / "Snakefile", FAILING.format(tools=str(tools)))
    done = snakemake(run_dir, "slurm")
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "exit code 7" in out or "exit status 7" in out, out[-4000:]
    assert not (run_dir / "never.txt").exists()
