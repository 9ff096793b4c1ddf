"""Cluster DNS for the real node's pods: CoreDNS on the host's address on the pods' bridge, answering
for cluster.local from the API server (the kubelet's clusterDNS points there), so the pods of a JobSet
or an MPIJob find each other by name (`<pod>.<service>.<namespace>.svc`). Other names go to the host's
resolvers. No kube-proxy is needed: Services of the steps' operators are headless.
"""

from __future__ import annotations

import urllib.request

from . import containerd, kubeconfig, procs
from .layout import Layout
from .procs import Daemon

DOMAIN = "cluster.local"
IDENTITY = "coredns"


def build_corefile(layout: Layout) -> str:
    """The Corefile: DNS on the bridge address (for pods) and on loopback (for probes)."""
    p = layout.ports
    kc = kubeconfig.for_identity(layout, IDENTITY)
    binds = f"bind {containerd.HOST_ADDRESS} 127.0.0.1"
    return f"""{DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    {binds}
    errors
    health 127.0.0.1:{p.coredns_health}
    ready 127.0.0.1:{p.coredns_ready}
    kubernetes {DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kc}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
}}
.:53 {{
    {binds}
    errors
    forward . /etc/resolv.conf
    cache 30
}}
"""


def ready(layout: Layout) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{layout.ports.coredns_ready}/ready", timeout=3) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def up(layout: Layout) -> None:
    work = layout.component_dir("coredns")
    work.mkdir(parents=True, exist_ok=True)
    corefile = work / "Corefile"
    text = build_corefile(layout)
    if not corefile.exists() or corefile.read_text() != text:
        corefile.write_text(text)
        procs.stop(layout, "coredns")
    procs.start(layout, Daemon("coredns", [str(layout.bin("coredns", "coredns")), "-conf", str(corefile)]))
    procs.wait_until("CoreDNS ready", lambda: ready(layout), 60, procs.log_path(layout, "coredns"))


def down(layout: Layout) -> None:
    procs.stop(layout, "coredns")


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    ok = ready(layout)
    where = f"{containerd.HOST_ADDRESS}:53"
    return [("coredns", ok, f"{DOMAIN} on {where}" if ok else "not ready")]
