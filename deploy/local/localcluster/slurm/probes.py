"""Health probes of the Slurm daemons."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable

from ..layout import Layout
from ..procs import ClusterError
from .site import API_VERSION, paths

# ---------------------------------------------------------------- probes

Probe = Callable[[], tuple[bool, str]]
Check = Callable[[], bool]


def _ok(argv: list[str], input: str | None = None, timeout: float = 15) -> tuple[bool, str]:
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    out = (cp.stdout.strip() or cp.stderr.strip())[-500:]
    return cp.returncode == 0, out


def probe_munge() -> tuple[bool, str]:
    ok, cred = _ok(["munge", "-n"])
    if not ok:
        return False, cred
    ok, out = _ok(["unmunge"], input=cred + "\n")
    status = next((ln for ln in out.splitlines() if ln.startswith("STATUS:")), out)
    return ok and "Success" in status, status.replace("STATUS:", "").strip()


def probe_mariadb(layout: Layout) -> tuple[bool, str]:
    ok, out = _ok(["mariadb-admin", f"--socket={paths(layout).mariadb_socket}", "-uroot", "ping"])
    return ok and "alive" in out, out


def probe_slurmdbd() -> tuple[bool, str]:
    ok, out = _ok(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"])
    if not ok:
        return False, out
    return True, f"clusters: {out.replace(chr(10), ',') or '(none)'}"


def probe_slurmctld() -> tuple[bool, str]:
    ok, out = _ok(["scontrol", "ping"])
    return ok and "UP" in out, out


BAD_NODE_STATES = ("DOWN", "NOT_RESPONDING", "UNKNOWN", "FAIL", "INVAL", "REBOOT", "POWER")


def node_states() -> dict[str, tuple[str, str]]:
    """{node: (State, Reason)} from one `scontrol show node -o`."""
    cp = subprocess.run(["scontrol", "show", "node", "-o"], capture_output=True, text=True, timeout=15)
    if cp.returncode != 0:
        raise ClusterError(f"scontrol show node failed: {cp.stderr.strip()}")
    return parse_node_states(cp.stdout)


def parse_node_states(text: str) -> dict[str, tuple[str, str]]:
    """{node: (State, Reason)} of `scontrol show node -o` output."""
    out: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        reason = line.split("Reason=", 1)[1] if "Reason=" in line else ""
        if "NodeName" in fields:
            out[fields["NodeName"]] = (fields.get("State", "?"), reason)
    return out


def node_ok(state: str) -> bool:
    return not any(bad in state for bad in BAD_NODE_STATES)


def probe_restd(layout: Layout, token: str) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{layout.ports.slurmrestd}/slurm/{API_VERSION}/ping"
    req = urllib.request.Request(url, headers={"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": token})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - fixed http://127.0.0.1 URL
            body = json.load(r)
    except (OSError, ValueError) as e:
        return False, str(e)
    pings = body.get("pings", [])
    errors = body.get("errors", [])
    if errors or not pings:
        return False, json.dumps(errors or body)[:300]
    return True, ", ".join(f"{p.get('hostname')} {p.get('ping')}" for p in pings)
