"""containerd (Debian's 1.6) for the real node, with runc and the CNI plugins from Debian.

Its own socket, root and state under layout.component_dir("containerd") — never /run/containerd's
socket — and its own CNI network (bridge `cvg0`, host-local addresses, portmap; containerd adds
loopback itself). containerd runs under `tini -s`: PID 1 here never reaps, and a shim that exits
after its container is removed would otherwise stay a zombie forever; as a child subreaper tini
adopts and reaps them.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from . import mounts, packages, pki, procs, registry
from .layout import Layout
from .procs import ClusterError, Daemon

PACKAGES = ["containerd", "runc", "containernetworking-plugins", "iptables", "tini"]
NAMESPACE = "k8s.io"  # the CRI plugin's namespace: kubelet's pods live here
CNI_BIN = Path("/usr/lib/cni")
BRIDGE = "cvg0"
POD_SUBNET = "10.85.0.0/24"
HOST_ADDRESS = pki.HOST_BRIDGE_IP  # the host's address on the bridge
RUNC = "/usr/sbin/runc"


@dataclass(frozen=True)
class Paths:
    base: Path

    @property
    def socket(self) -> Path:
        return self.base / "containerd.sock"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def config(self) -> Path:
        return self.base / "config.toml"

    @property
    def cni_conf(self) -> Path:
        return self.base / "net.d"

    @property
    def ipam(self) -> Path:
        return self.base / "ipam"

    @property
    def certs_d(self) -> Path:
        """The CRI's registry hosts directory (config_path): <host:port>/hosts.toml per registry."""
        return self.base / "certs.d"

    @property
    def runc_root(self) -> Path:
        return self.state / "runc"


def paths(layout: Layout) -> Paths:
    return Paths(layout.component_dir("containerd"))


def endpoint(layout: Layout) -> str:
    """The CRI endpoint as kubelet wants it."""
    return f"unix://{paths(layout).socket}"


def build_config(p: Paths, sandbox_image: str) -> str:
    """containerd's config.toml (version 2): CRI with runc on cgroupfs, overlayfs, our CNI."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""# Written by deploy/local/localcluster/containerd.py; edits are overwritten.
version = 2
root = "{p.root}"
state = "{p.state}"
# plugins that would look for hosts' paths or file systems we do not use
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{p.socket}"

[ttrpc]
  address = "{p.socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{sandbox_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # lowering oom_score_adj needs CAP_SYS_RESOURCE, which root does not have on every machine (this one)
  restrict_oom_score_adj = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{RUNC}"
  Root = "{p.runc_root}"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{p.cni_conf}"
  max_conf_num = 1

[{cri}.registry]
  config_path = "{p.certs_d}"
"""


def build_hosts_toml(registry_address: str, ca: Path) -> str:
    """hosts.toml of the site registry (pure): TLS verified with the site's CA, pulls only (no push
    from the node; anonymous: reads are open to the site, so pods need no imagePullSecret)."""
    return f"""# Written by deploy/local/localcluster/containerd.py; edits are overwritten.
server = "https://{registry_address}"

[host."https://{registry_address}"]
  capabilities = ["pull", "resolve"]
  ca = "{ca}"
"""


def build_cni_config(p: Paths) -> dict[str, object]:
    """One bridge network for the node's pods: they reach each other and the host (HOST_ADDRESS on
    the bridge, which up() makes) and nothing else. Not a gateway, not masqueraded: the bridge
    plugin would otherwise switch on the host's IP forwarding."""
    return {
        "cniVersion": "1.0.0",
        "name": "converged",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    # the gateway address is never handed to a pod: it is the host's, on the bridge
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": HOST_ADDRESS}]],
                    "dataDir": str(p.ipam),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _ensure_bridge() -> None:
    """The pods' bridge with the host's address on it, so the host reaches its pods (probes,
    port-forward) without being their router."""
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        procs.run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    prefix = POD_SUBNET.split("/")[1]
    if f" {HOST_ADDRESS}/" not in procs.run(["ip", "-4", "-o", "addr", "show", "dev", BRIDGE]).stdout:
        procs.run(["ip", "addr", "add", f"{HOST_ADDRESS}/{prefix}", "dev", BRIDGE])
    procs.run(["ip", "link", "set", BRIDGE, "up"])


def ctr(layout: Layout, *args: str, timeout: float = 60, check: bool = True) -> str:
    """Run Debian's ctr against our containerd in the CRI namespace; returns stdout."""
    argv = ["ctr", f"--address={paths(layout).socket}", f"--namespace={NAMESPACE}", *args]
    return procs.run(argv, timeout=timeout, check=check).stdout


def answering(layout: Layout) -> str | None:
    """containerd's server version if it answers on our socket, else None."""
    if not paths(layout).socket.exists():
        return None
    cp = procs.run(["ctr", f"--address={paths(layout).socket}", "version"], check=False, timeout=10)
    if cp.returncode != 0:
        return None
    server = cp.stdout.split("Server:", 1)[-1]
    return next((ln.split(":", 1)[1].strip() for ln in server.splitlines() if "Version:" in ln), "?")


def _write(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def _daemon(layout: Layout) -> Daemon:
    return Daemon(
        "containerd",
        ["tini", "-s", "--", "containerd", f"--config={paths(layout).config}"],
    )


def up(layout: Layout, sandbox_image: str) -> None:
    packages.ensure(PACKAGES)
    p = paths(layout)
    for d in (p.base, p.root, p.state, p.cni_conf, p.ipam):
        d.mkdir(parents=True, exist_ok=True)
    changed = _write(p.config, build_config(p, sandbox_image))
    # read at each pull: a new or changed hosts.toml needs no restart
    site_registry = registry.address(layout)
    _write(p.certs_d / site_registry / "hosts.toml", build_hosts_toml(site_registry, layout.pki / "ca.crt"))
    changed |= _write(p.cni_conf / "10-converged.conflist", json.dumps(build_cni_config(p), indent=2) + "\n")
    _ensure_bridge()
    if changed:
        procs.stop(layout, "containerd")  # a new config (a new pause image): restart; pods keep running
    procs.start(layout, _daemon(layout))

    def ready() -> bool:
        if procs.running(layout, "containerd") is None:
            raise ClusterError(f"containerd exited; see {procs.log_path(layout, 'containerd')}")
        return answering(layout) is not None

    procs.wait_until("containerd", ready, 60, procs.log_path(layout, "containerd"))


def _network_namespace(info: dict[str, object]) -> Path | None:
    spec = info.get("Spec")
    namespaces = spec.get("linux", {}).get("namespaces", []) if isinstance(spec, dict) else []
    for ns in namespaces:
        if ns.get("type") == "network" and ns.get("path"):
            return Path(ns["path"])
    return None


def remove_all_containers(layout: Layout) -> list[str]:
    """Kill and delete every task and container (pod sandboxes included) of our containerd, and
    unmount the network namespaces of the sandboxes. Returns the ids removed."""
    if answering(layout) is None:
        return []
    ids = ctr(layout, "containers", "ls", "-q").split()
    tasks = {ln.split()[0] for ln in ctr(layout, "tasks", "ls").splitlines()[1:] if ln.strip()}
    netns: list[Path] = []
    for cid in ids:
        info = json.loads(ctr(layout, "containers", "info", cid, check=False) or "{}")
        if (ns := _network_namespace(info)) is not None:
            netns.append(ns)
        if cid in tasks:  # --force: SIGKILL a running task and wait for it before deleting it
            ctr(layout, "tasks", "delete", "--force", cid, check=False)
        ctr(layout, "containers", "delete", cid, check=False)
    for ns in netns:
        mounts.unmount_under(ns)
        ns.unlink(missing_ok=True)
    return ids


def our_shims(layout: Layout) -> list[int]:
    """Pids of the shims serving our containerd (they outlive it by design)."""
    address = str(paths(layout).socket).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address in argv:
            found.append(int(entry.name))
    return found


def down(layout: Layout) -> None:
    """Remove every container and sandbox, stop containerd, and undo its mounts and network."""
    if answering(layout) is None and our_shims(layout):
        # containerd died under running containers: start it again, only to remove them properly
        procs.start(layout, _daemon(layout))
        with contextlib.suppress(ClusterError):
            procs.wait_until("containerd", lambda: answering(layout) is not None, 30)
    remove_all_containers(layout)
    procs.stop(layout, "containerd")
    p = paths(layout)
    mounts.unmount_under(p.state)
    mounts.unmount_under(p.root)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        procs.run(["ip", "link", "delete", BRIDGE], check=False)
    for entry in p.ipam.glob("*/*"):  # host-local's reservations: no sandbox is left to hold one
        entry.unlink()


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    if procs.running(layout, "containerd") is None:
        return [("containerd", False, "not running")]
    version = answering(layout)
    if version is None:
        return [("containerd", False, f"no answer on {paths(layout).socket}")]
    try:
        running = [ln for ln in ctr(layout, "tasks", "ls").splitlines()[1:] if "RUNNING" in ln]
    except ClusterError as e:
        return [("containerd", False, str(e))]
    return [("containerd", True, f"v{version.lstrip('v')}, {len(running)} running tasks")]


def env(layout: Layout) -> dict[str, str]:
    """What ctr (and crictl) read to talk to the real node's containerd."""
    return {
        "CONTAINERD_ADDRESS": str(paths(layout).socket),
        "CONTAINERD_NAMESPACE": NAMESPACE,
        "CONTAINER_RUNTIME_ENDPOINT": endpoint(layout),
    }
