"""The allocation agent, run for real: the bash script `build_agent_script` makes, with the local launcher
(each step a process in a session of its own), on a temporary directory. The controller's side of the
hand-over is `converged_bridge.allocation.handover`, used here as the controller uses it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from converged_bridge.allocation.agent import (
    AgentSpec,
    LocalLaunch,
    SrunLaunch,
    build_agent_script,
    build_step_header,
)
from converged_bridge.allocation.handover import HandoverReader, hand_over, mark_cancelled, mark_closed
from converged_bridge.allocation.paths import AllocationPaths
from converged_bridge.errors import InvalidStep


def step_script(body: str, name: str = "rule-1", minutes: int | None = None) -> str:
    return f"#!/bin/bash\n{build_step_header(name, minutes)}\nset -eu\n{body}\n"


@pytest.fixture
def paths(tmp_path: Path) -> AllocationPaths:
    return AllocationPaths(
        spool=str(tmp_path / "spool"), state=str(tmp_path / "state"), logs=str(tmp_path / "logs")
    )


class Agent:
    def __init__(self, paths: AllocationPaths, slots: int = 2, idle: int = 60) -> None:
        script = build_agent_script(
            AgentSpec("ns/alloc", paths, slots, idle, LocalLaunch(), tick_seconds=0.05)
        )
        self.log = Path(paths.logs).parent / f"agent-{uuid.uuid4().hex[:6]}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(["bash", "-c", script], stdout=out, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()


def until(what: str, probe: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def uid() -> str:
    return str(uuid.uuid4())


def test_steps_run_in_slots_record_their_end_and_the_agent_exits_once_closed(
    paths: AllocationPaths, tmp_path: Path, agents: list[Agent]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    ok, bad, third = uid(), uid(), uid()
    hand_over(paths, ok, step_script(f"echo hello from ok; touch {out}/ok"))
    hand_over(paths, bad, step_script("echo failing >&2; exit 3", name="bad-2"))
    agent = Agent(paths)
    agents.append(agent)
    hand_over(paths, third, step_script(f"touch {out}/third"))
    assert hand_over(paths, third, step_script("touch /never")) is False  # handed over once
    until("three steps done", lambda: len(HandoverReader().read(paths).done) == 3)
    mark_closed(paths)
    assert agent.wait() == 0
    seen = HandoverReader().read(paths)
    assert seen.handed == seen.claimed == set(seen.started) == set(seen.done) == {ok, bad, third}
    assert {u: r.exit_code for u, r in seen.done.items()} == {ok: 0, bad: 3, third: 0}
    for result in seen.done.values():
        assert result.started is not None and result.started <= result.ended
    assert (out / "ok").exists() and (out / "third").exists()
    assert Path(paths.step_log(ok)).read_text() == "hello from ok\n"
    assert Path(paths.step_log(bad)).read_text() == "failing\n"
    assert "closed, and every step it was given has ended: exiting" in agent.log.read_text()


def test_a_step_cancelled_before_its_claim_never_starts(
    paths: AllocationPaths, tmp_path: Path, agents: list[Agent]
) -> None:
    doomed, kept = uid(), uid()
    hand_over(paths, doomed, step_script(f"touch {tmp_path}/doomed-ran"))
    hand_over(paths, kept, step_script("true"))
    assert mark_cancelled(paths, doomed) is False  # not claimed when the marker was written
    mark_closed(paths)
    agent = Agent(paths)
    agents.append(agent)
    assert agent.wait() == 0
    seen = HandoverReader().read(paths)
    assert seen.done[doomed].exit_code is None and seen.done[kept].exit_code == 0
    assert doomed not in seen.started
    assert not (tmp_path / "doomed-ran").exists()


def test_a_running_step_is_stopped_by_its_cancel_marker_alone(
    paths: AllocationPaths, tmp_path: Path, agents: list[Agent]
) -> None:
    slow, other = uid(), uid()
    hand_over(
        paths, slow, step_script(f"touch {tmp_path}/slow-started; sleep 60; touch {tmp_path}/slow-done")
    )
    hand_over(paths, other, step_script(f"sleep 1; touch {tmp_path}/other-done"))
    agent = Agent(paths)
    agents.append(agent)
    until("the slow step to start", lambda: (tmp_path / "slow-started").exists())
    assert mark_cancelled(paths, slow) is True  # claimed: the controller waits for its end
    until("the slow step to end", lambda: slow in HandoverReader().read(paths).done)
    mark_closed(paths)
    assert agent.wait() == 0
    done = HandoverReader().read(paths).done
    assert done[slow].exit_code == 128 + signal.SIGTERM
    assert done[other].exit_code == 0 and (tmp_path / "other-done").exists()
    assert not (tmp_path / "slow-done").exists()


def test_no_more_steps_than_slots_run_at_once(
    paths: AllocationPaths, tmp_path: Path, agents: list[Agent]
) -> None:
    steps = [uid() for _ in range(5)]
    for i, u in enumerate(steps):
        lock = f"{tmp_path}/lock-{i}"
        body = f"mkdir {lock}; ls -d {tmp_path}/lock-* | wc -l >{tmp_path}/seen-{i}; sleep 0.5; rmdir {lock}"
        hand_over(paths, u, step_script(body))
    mark_closed(paths)
    agent = Agent(paths, slots=2)
    agents.append(agent)
    assert agent.wait() == 0
    assert max(int((tmp_path / f"seen-{i}").read_text()) for i in range(5)) == 2
    assert {r.exit_code for r in HandoverReader().read(paths).done.values()} == {0}


def test_an_idle_agent_exits_when_not_closed(paths: AllocationPaths, agents: list[Agent]) -> None:
    agent = Agent(paths, idle=1)
    agents.append(agent)
    assert agent.wait() == 0
    assert "nothing to run for 1s: exiting" in agent.log.read_text()


def test_term_stops_the_running_steps_and_records_them(
    paths: AllocationPaths, tmp_path: Path, agents: list[Agent]
) -> None:
    slow = uid()
    hand_over(paths, slow, step_script(f"touch {tmp_path}/started; sleep 60"))
    agent = Agent(paths)
    agents.append(agent)
    until("the step to start", lambda: (tmp_path / "started").exists())
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.wait() == 143
    result = HandoverReader().read(paths).done[slow]
    assert (result.exit_code, result.stopped) == (128 + signal.SIGTERM, True)


def test_a_second_agent_never_runs_a_claimed_step_again(
    paths: AllocationPaths, tmp_path: Path, agents: list[Agent]
) -> None:
    once = uid()
    hand_over(paths, once, step_script(f"echo ran >>{tmp_path}/runs"))
    mark_closed(paths)
    first = Agent(paths)
    agents.append(first)
    assert first.wait() == 0
    second = Agent(paths)
    agents.append(second)
    assert second.wait() == 0
    assert (tmp_path / "runs").read_text() == "ran\n"
    assert "was claimed before: skipped" in second.log.read_text()


def test_the_header_is_the_only_thing_the_agent_reads_of_a_step(
    paths: AllocationPaths, tmp_path: Path, agents: list[Agent]
) -> None:
    hostile = uid()
    name = f"$(touch {tmp_path}/pwned)"
    script = f"#!/bin/bash\n# converged-step {name} `touch {tmp_path}/pwned2`\necho fine\n"
    hand_over(paths, hostile, script)
    odd = tmp_path / "spool" / "inbox" / "not-a-uid;touch pwned3"
    odd.write_text(step_script(f"touch {tmp_path}/pwned3"))
    mark_closed(paths)
    agent = Agent(paths)
    agents.append(agent)
    assert agent.wait() == 0
    assert HandoverReader().read(paths).done[hostile].exit_code == 0
    assert Path(paths.step_log(hostile)).read_text() == "fine\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pwned")) == []
    assert "started as step" in agent.log.read_text()


def test_the_srun_launcher_asks_for_one_slot_exactly() -> None:
    paths = AllocationPaths("/s/spool", "/s/state", "/s/logs")
    script = build_agent_script(
        AgentSpec("ns/a", paths, 4, 300, SrunLaunch(cpus=2, mem_mib=954, gpus=1, gpu_model="a100"))
    )
    launch = next(line for line in script.splitlines() if "setsid srun" in line)
    assert "--exact --nodes=1 --ntasks=1 --cpus-per-task=2 --mem=954M --gres=gpu:a100:1" in launch
    assert '--job-name="$name" ${minutes:+"--time=$minutes"}' in launch
    plain = build_agent_script(AgentSpec("ns/a", paths, 4, 300, SrunLaunch(cpus=1, mem_mib=None)))
    assert "--gres=none" in plain and "--mem=" not in plain
    with pytest.raises(InvalidStep):
        build_agent_script(AgentSpec("ns/a", paths, 0, 300, LocalLaunch()))
    assert os.path.basename(paths.step_log("u")) == "converged-u.log"


SNAKEFILE = """
rule all:
    input: expand("out/{i}.txt", i=range(3))
rule map:
    output: "out/{i}.txt"
    shell: "echo {wildcards.i} $GREETING > {output}"
"""


def snakemake_command(flow: Path, i: int) -> list[str]:
    """What the plugin hands a step: one shell line running snakemake for one job."""
    line = (
        f"python3 -m snakemake --snakefile '{flow}/Snakefile' --target-jobs 'map:i={i}' --allowed-rules map "
        "--cores 'all' --force-use-threads --force --target-files-omit-workdir-adjustment --nocolor "
        "--no-hooks --nolock --ignore-incomplete --latency-wait 5 --mode 'remote'"
    )
    return ["/bin/sh", "-c", line]


def test_warm_steps_run_as_forks_of_one_snakemake_and_others_run_cold(
    paths: AllocationPaths, tmp_path: Path, agents: list[Agent]
) -> None:
    import json
    import shlex
    import sys

    from converged_bridge.allocation.handover import write_warm_launcher
    from converged_bridge.allocation.warm import build_warm_command, parse_warm_args

    flow = tmp_path / "flow"
    flow.mkdir()
    (flow / "Snakefile").write_text(SNAKEFILE)
    python = Path(sys.executable)
    warm_argv = build_warm_command(paths.state, paths.spool, paths.logs)
    # the test's own python stands in for the image's: it has snakemake
    write_warm_launcher(paths, f"#!/bin/bash\nexec {shlex.join([str(python), *warm_argv[1:]])}\n")
    steps = {uid(): i for i in range(3)}
    for u, i in steps.items():
        args = parse_warm_args(snakemake_command(flow, i))
        assert args is not None
        spec = json.dumps({"args": args, "cwd": str(flow), "env": {"GREETING": f"hello-{i}"}})
        cold = step_script(f"cd {flow}; GREETING=cold {python} -m snakemake {shlex.join(args)}")
        hand_over(paths, u, cold, warm=spec if i < 2 else None)  # the last one runs cold
    mark_closed(paths)
    script = build_agent_script(
        AgentSpec("ns/alloc", paths, 2, 60, LocalLaunch(), tick_seconds=0.05, warm=True)
    )
    log = tmp_path / "agent.log"
    with open(log, "w") as out:
        agent = subprocess.run(["bash", "-c", script], stdout=out, stderr=subprocess.STDOUT, timeout=240)
    assert agent.returncode == 0, log.read_text()
    assert "warm snakemake ready" in log.read_text()
    seen = HandoverReader().read(paths)
    assert {u: r.exit_code for u, r in seen.done.items()} == {u: 0 for u in steps}
    assert sorted((flow / "out" / f"{i}.txt").read_text() for i in range(3)) == [
        "0 hello-0\n",
        "1 hello-1\n",
        "2 cold\n",
    ]
    forked = {p.name for p in (Path(paths.state) / "warm").iterdir() if not p.name.endswith(".part")}
    assert forked == {u for u, i in steps.items() if i < 2}
    assert "Finished jobid" in Path(paths.step_log(next(iter(steps)))).read_text()


def test_only_a_plain_snakemake_command_is_warmed() -> None:
    from converged_bridge.allocation.warm import parse_warm_args

    line = "python3 -m snakemake --snakefile '/a b/Snakefile' --target-jobs 'map:i=1' --mode \"remote\""
    assert parse_warm_args(["/bin/sh", "-c", line]) == [
        "--snakefile",
        "/a b/Snakefile",
        "--target-jobs",
        "map:i=1",
        "--mode",
        "remote",
    ]
    assert parse_warm_args(["python3", "-m", "snakemake", "--x"]) == ["--x"]
    for shell in (
        "python3 -m snakemake $(rm -rf /)",
        "python3 -m snakemake a; rm b",
        'python3 -m snakemake "a$b"',
        "python3 -m snakemake *",
        "python3 -m snakemake ~/x",
        "cd x && python3 -m snakemake",
        "python3 -m snakemake 'unclosed",
        "echo python3 -m snakemake",
        "python3 -c 'import snakemake'",
    ):
        assert parse_warm_args(["/bin/sh", "-c", shell]) is None, shell
