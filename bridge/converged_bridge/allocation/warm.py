"""Warm snakemake in an allocation (pure): one interpreter per allocation imports snakemake once, and each
step whose command is `python3 -m snakemake ARGS` runs as a fork of it — the same CLI with the same
arguments, without the ~1 s of CPU a fresh interpreter spends importing snakemake (on this machine a
step then costs ~0.2 s of CPU instead of ~1.4 s).

Only a command that is exactly that is warmed: `/bin/sh -c 'python3 -m snakemake ...'` (what the plugin
writes) whose words are plain — no shell operator, expansion, quoting trick or glob — or the argv itself.
Anything else runs cold, as its own process. The launcher (`ZYGOTE`, started by the agent through the
spool's `warm` script) reads `run <uid>` / `kill <uid>` lines from a FIFO, forks a child per step in a
session of its own (stdout and stderr appended to the step's log, the step's working directory and
environment), and writes the child's exit status to `warm/<uid>` in the agent's state directory; the
agent's per-step client (inside the step's own job step on Slurm) waits for that file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from converged_bridge.api.workflowstep import WorkflowStep

PYTHONS = frozenset({"python3", "python"})
SHELLS = frozenset({"/bin/sh", "sh", "/bin/bash", "bash"})
# what a shell would expand, substitute, glob or treat as an operator, outside quotes / inside "..."
_SPECIAL_BARE = frozenset("$`\\*?[]{}~!#;&|<>()\n")
_SPECIAL_DOUBLE = frozenset("$`\\!")


def plain_shell_words(line: str) -> list[str] | None:
    """The words a POSIX shell makes of `line` when it only splits and removes quotes (no expansion,
    substitution, glob or operator anywhere); None otherwise."""
    words: list[str] = []
    word: list[str] | None = None
    quote = ""
    for ch in line:
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                word.append(ch)  # type: ignore[union-attr]
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch in _SPECIAL_DOUBLE:
                return None
            else:
                word.append(ch)  # type: ignore[union-attr]
        elif ch in " \t":
            if word is not None:
                words.append("".join(word))
                word = None
        elif ch in "'\"":
            quote = ch
            word = word if word is not None else []
        elif ch in _SPECIAL_BARE:
            return None
        else:
            word = word if word is not None else []
            word.append(ch)
    if quote:
        return None
    if word is not None:
        words.append("".join(word))
    return words


def parse_warm_args(command: Sequence[str]) -> list[str] | None:
    """The snakemake arguments of a command that is exactly `python3 -m snakemake ARGS`, else None."""
    words: list[str] | None = list(command)
    if len(command) == 3 and command[0] in SHELLS and command[1] == "-c":
        words = plain_shell_words(command[2])
    if words is None or len(words) < 3 or words[0] not in PYTHONS or words[1:3] != ["-m", "snakemake"]:
        return None
    return words[3:]


def build_warm_spec(step: WorkflowStep) -> str | None:
    """What the warm launcher needs to run `step` as a fork (JSON), or None when it must run cold."""
    args = parse_warm_args(step.spec.command)
    if args is None or step.spec.working_dir is None or any(e.value is None for e in step.spec.env):
        return None
    env = {e.name: e.value for e in step.spec.env if e.value is not None}
    return json.dumps({"args": args, "cwd": step.spec.working_dir, "env": env}, sort_keys=True)


def build_warm_command(state: str, spool: str, logs: str) -> list[str]:
    """The launcher's argv (run in the step image: its python3 and snakemake)."""
    return ["python3", "-c", ZYGOTE, state, spool, logs]


ZYGOTE = r"""
import json, os, re, select, signal, sys, time, traceback
state, spool, logs = sys.argv[1:4]
import snakemake.cli  # the warm part: every step forked from here finds it imported

UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
done = os.path.join(state, "warm")
os.makedirs(done, exist_ok=True)
children, kills = {}, {}  # pid -> uid; pid -> when to KILL


def put(path, text):
    with open(path + ".part", "w") as f:
        f.write(text)
    os.replace(path + ".part", path)


def run(uid):
    with open(os.path.join(spool, "inbox", uid + ".warm")) as f:
        spec = json.load(f)
    pid = os.fork()
    if pid:
        children[pid] = uid
        return
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log = os.path.join(logs, "converged-%s.log" % uid)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.chdir(spec["cwd"])
        os.environ.update(spec["env"])
        sys.argv = ["snakemake", *spec["args"]]
        snakemake.cli.main(spec["args"])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code & 0xFF)


def stop(signum, frame):  # the agent is done (or the allocation ends): the steps still running end too
    for pid in children:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
fifo = os.open(os.path.join(state, "warm.fifo"), os.O_RDWR | os.O_NONBLOCK)
put(os.path.join(state, "warm.ready"), str(os.getpid()))
print("warm snakemake ready in pid %d" % os.getpid(), flush=True)
buffer = b""
while True:
    if select.select([fifo], [], [], 0.1)[0]:
        buffer += os.read(fifo, 65536)
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            words = line.decode(errors="replace").split()
            if len(words) != 2 or not UID.fullmatch(words[1]):
                continue
            verb, uid = words
            running = {u: p for p, u in children.items()}
            if verb == "run" and uid not in running and not os.path.exists(os.path.join(done, uid)):
                try:
                    run(uid)
                except Exception:
                    traceback.print_exc()
                    put(os.path.join(done, uid), "70")
            elif verb == "kill" and uid in running:
                try:
                    os.killpg(running[uid], signal.SIGTERM)
                except ProcessLookupError:
                    pass
                kills[running[uid]] = time.monotonic() + 10
    for pid, at in list(kills.items()):
        if time.monotonic() >= at:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            del kills[pid]
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        uid = children.pop(pid, None)
        kills.pop(pid, None)
        if uid is not None:
            code = os.waitstatus_to_exitcode(status)
            put(os.path.join(done, uid), str(code if code >= 0 else 128 - code))
"""
