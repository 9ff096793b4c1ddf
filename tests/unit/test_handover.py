"""The hand-over of a rule's commands to its own image: the shim and the runner run for real here, as
processes (the runner in dash, the shim in python3), with the protocol's FIFOs in a temporary directory.
Only the container runtime of host mode is a stand-in (a script that records its argv and runs the
command), since no Apptainer runs in unit tests; the live runs are in tests/integration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from converged_bridge.handover import shim
from converged_bridge.handover.build import (
    DRIVER_PRELUDE,
    RUNNER,
    build_host_setup,
    build_pod_handover,
    registry_reference,
    rule_image_problem,
    shim_source,
)

SH = shutil.which("dash") or "/bin/sh"
WAIT_FOR_B = "while [ ! -e b ]; do sleep 0.05; done; echo a"
SHOW_VARS = 'echo "$STEP_VAR ${APPTAINER_NAME:-none}"'


@pytest.fixture
def handover(tmp_path: Path) -> Iterator[Path]:
    h = tmp_path / "handover"
    h.mkdir()
    yield h


def start_runner(h: Path, queue: str) -> subprocess.Popen[bytes]:
    os.mkfifo(h / queue)
    return subprocess.Popen([SH, "-c", RUNNER, "converged-runner", str(h), queue])


def run_shim(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    shim_file = cwd / "apptainer"
    shim_file.write_text(shim_source())
    return subprocess.run(
        [sys.executable, str(shim_file), *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=30
    )


def stop(runner: subprocess.Popen[bytes]) -> None:
    runner.terminate()
    assert runner.wait(timeout=10) == 0  # TERM ends it cleanly, as the kubelet stops a sidecar


def test_pod_mode_runs_the_command_in_the_runner_streams_and_returns_its_exit_code(
    handover: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work dir"
    work.mkdir()
    runner = start_runner(handover, "queue-0")
    image = "/shared/wf/.snakemake/singularity/abc.simg"
    env = {
        "PATH": os.environ["PATH"],
        "CONVERGED_HANDOVER": str(handover),
        "CONVERGED_HANDOVER_MODE": "pod",
        "CONVERGED_RULE_IMAGES": json.dumps({image: "queue-0"}),
        "SINGULARITYENV_FROM_SNAKEMAKE": "it's $HOME",  # snakemake's envvars reach the command
        "LD_LIBRARY_PATH": "/driver/lib",  # the driver's own: not carried
    }
    command = 'echo out:$PWD; echo err >&2; echo "$FROM_SNAKEMAKE|$HOME|${LD_LIBRARY_PATH:-none}"; exit 3'
    try:
        done = run_shim(
            [
                "--quiet",
                "--silent",
                "exec",
                "--home",
                str(work),
                "--bind",
                "/x:/y",
                image,
                "bash",
                "-c",
                command,
            ],
            env,
            work,
        )
    finally:
        stop(runner)
    assert done.returncode == 3
    assert done.stdout.splitlines() == [f"out:{work}", f"it's $HOME|{work}|none"]
    assert done.stderr == "err\n"
    assert [p.name for p in handover.iterdir()] == ["queue-0"]  # the request is cleaned up


def test_pod_mode_runs_requests_side_by_side_and_an_unknown_image_is_refused(
    handover: Path, tmp_path: Path
) -> None:
    runner = start_runner(handover, "queue-0")
    env = {
        "PATH": os.environ["PATH"],
        "CONVERGED_HANDOVER": str(handover),
        "CONVERGED_HANDOVER_MODE": "pod",
        "CONVERGED_RULE_IMAGES": json.dumps({"/i.sif": "queue-0"}),
    }
    shim_file = tmp_path / "apptainer"
    shim_file.write_text(shim_source())
    try:
        # two requests at once: the first waits for the second's file, so a serial runner would hang
        first = subprocess.Popen(
            [sys.executable, str(shim_file), "exec", "/i.sif", "sh", "-c", WAIT_FOR_B],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        second = run_shim(["exec", "/i.sif", "sh", "-c", "touch b; echo b"], env, tmp_path)
        assert second.stdout == "b\n"
        assert first.communicate(timeout=20)[0] == "a\n"
        unknown = run_shim(["exec", "/other.sif", "sh", "-c", "true"], env, tmp_path)
    finally:
        stop(runner)
    assert unknown.returncode == 127
    assert "image /other.sif is not one this step's pod runs" in unknown.stderr


def test_version_and_pull_answer_without_a_runner(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"]}
    version = run_shim(["--version"], env, tmp_path)
    assert version.returncode == 0
    assert version.stdout.startswith("apptainer version 1.")  # snakemake's check needs >= 1.0.0
    assert run_shim(["pull", "--name", "x.simg", "docker://a/b"], env, tmp_path).returncode == 0
    assert not (tmp_path / "x.simg").exists()


def test_host_mode_hands_apptainers_own_argv_to_the_runtime_with_search_paths_copied(
    handover: Path, tmp_path: Path
) -> None:
    """Slurm: the runner runs `$converged_runtime exec ...` as snakemake built it; a `script:` rule's bind
    of the driver's search path points at a copy in the hand-over directory instead."""
    searchpath = tmp_path / "driver-site-packages"
    (searchpath / "snakemake").mkdir(parents=True)
    (searchpath / "snakemake" / "__init__.py").write_text("# driver's snakemake\n")
    copies = handover / "searchpaths"
    copies.mkdir()
    runtime = tmp_path / "fake-apptainer"  # records its argv, runs the command after the image
    runtime.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGV_LOG"\n'
        'while [ "$1" != /img.sif ]; do shift; done; shift; exec "$@"\n'
    )
    runtime.chmod(0o755)
    os.mkfifo(handover / "queue")
    runner = subprocess.Popen(
        [SH, "-c", RUNNER, "converged-runner", str(handover), "queue"],
        env={**os.environ, "converged_runtime": str(runtime), "ARGV_LOG": str(tmp_path / "argv")},
    )
    bind = f"{searchpath}:/mnt/snakemake_searchpaths/item_0"
    env = {
        "PATH": os.environ["PATH"],
        "CONVERGED_HANDOVER": str(handover),
        "CONVERGED_HANDOVER_MODE": "host",
        "CONVERGED_SEARCHPATHS": str(copies),
        "APPTAINER_NAME": "driver.sif",  # Apptainer's own, inside the driver: not carried
        "STEP_VAR": "kept",
    }
    try:
        done = run_shim(
            ["exec", "--home", str(tmp_path), "--bind", bind, "/img.sif", "sh", "-c", SHOW_VARS],
            env,
            tmp_path,
        )  # fmt: skip
    finally:
        stop(runner)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "kept none\n"
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv == [
        "exec", "--home", str(tmp_path), "--bind", f"{copies}/item_0:/mnt/snakemake_searchpaths/item_0",
        "/img.sif", "sh", "-c", SHOW_VARS,
    ]  # fmt: skip
    assert (copies / "item_0" / "snakemake" / "__init__.py").read_text() == "# driver's snakemake\n"


@pytest.mark.parametrize(("shell", "expected"), [("bash", "bash"), ("no-such-shell", "sh")])
def test_a_rules_shell_falls_back_to_sh_where_the_image_lacks_it(shell: str, expected: str) -> None:
    """snakemake asks for bash; an image of busybox alone still runs the command, with its sh."""
    if expected == "bash" and shutil.which("bash") is None:
        pytest.fail("bash is needed for this test")
    argv = shim.any_shell([shell, "-c", 'echo "$1 ${BASH_VERSION:+bash}${BASH_VERSION:+}"', "x", "arg"])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout == f"arg {expected if expected == 'bash' else ''}\n"


def test_the_driver_prelude_installs_the_shim_first_on_path(tmp_path: Path) -> None:
    parts = build_pod_handover(
        ["/p/a.simg", "/p/b.simg"], ["sh", "-c", "command -v apptainer; apptainer --version"]
    )
    env = {**parts.env, "PATH": os.environ["PATH"], "CONVERGED_HANDOVER": str(tmp_path)}
    done = subprocess.run(parts.command, env=env, capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.splitlines() == [f"{tmp_path}/bin/apptainer", shim.VERSION]
    assert (tmp_path / "queue-0").is_fifo() and (tmp_path / "queue-1").is_fifo()
    assert json.loads(parts.env["CONVERGED_RULE_IMAGES"]) == {"/p/a.simg": "queue-0", "/p/b.simg": "queue-1"}
    assert parts.command[:3] == ["/bin/sh", "-c", DRIVER_PRELUDE]


def test_the_batch_script_lines_are_valid_bash_and_embed_the_shim_whole() -> None:
    lines = build_host_setup("apptainer")
    script = "\n".join(lines) + "\n"
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    start = lines.index("cat >\"$converged_handover/bin/apptainer\" <<'CONVERGED_SHIM_END'") + 1
    assert "\n".join(lines[start : lines.index("CONVERGED_SHIM_END")]) + "\n" == shim_source()
    assert 'export APPTAINERENV_PREPEND_PATH="$converged_handover/bin"' in lines
    assert 'export APPTAINER_BIND="${APPTAINER_BIND:+$APPTAINER_BIND,}$converged_handover"' in lines
    assert 'export SINGULARITYENV_CONVERGED_HANDOVER="${CONVERGED_HANDOVER}"' in build_host_setup(
        "singularity"
    )


def test_exec_parsing_finds_the_image_among_valued_options() -> None:
    args = ["--home", "/w", "-B", "/a:/b", "--pwd=/w/x", "--nv", "/img.sif", "bash", "-c", "x"]
    assert shim.parse_exec(args, {}) == (args[:6], "/img.sif", ["bash", "-c", "x"])
    assert shim.parse_exec(args, {"/img.sif": "queue-0"})[1] == "/img.sif"
    with pytest.raises(shim.Refused):
        shim.parse_exec(["--home", "/w"], {})


@pytest.mark.parametrize(
    ("url", "reference"),
    [
        ("docker://registry.site:5443/alice/bwa:0.7", "registry.site:5443/alice/bwa:0.7"),
        ("docker://", None),
        ("/shared/alice/tools.sif", None),
        ("library://alice/tools", None),
    ],
)
def test_what_a_kubelet_can_pull(url: str, reference: str | None) -> None:
    assert registry_reference(url) == reference
    assert (rule_image_problem(url) is None) == (reference is not None)


def test_a_local_image_is_refused_for_kubernetes_with_the_fix_named() -> None:
    problem = rule_image_problem("/shared/alice/tools.sif")
    assert problem is not None and "push it to the site registry" in problem
