"""The site registry's pure builders: distribution's and nginx's configuration (the per-user push rule,
evaluated here as nginx evaluates its map), the users' credentials files, /etc/hosts, containerd's
hosts.toml for the registry, the site's CA in hpc2's root, and the users' subordinate ids."""

from __future__ import annotations

import base64
import json
import re
import tomllib
from pathlib import Path

import pytest

from localcluster import containerd, registry, userenv
from localcluster.hpc2 import root
from localcluster.layout import Layout, Ports, read_versions


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(root=tmp_path / "local", cache=tmp_path / "cache", ports=Ports(), versions=read_versions())


def refused(method: str, user: str, path: str) -> bool:
    """nginx's `map` over PUSH_RULES: the value of the first regex that matches, else the default."""
    key = f"{method} {user} {path}"
    lines = [ln.split("#")[0].strip() for ln in registry.PUSH_RULES.splitlines()[1:-1]]
    default = None
    for line in filter(None, lines):
        pattern, value = line.rstrip(";").rsplit(" ", 1)
        if pattern == "default":
            default = value
        elif re.search(pattern.strip('"').removeprefix("~"), key):
            return value == "1"
    assert default is not None
    return default == "1"


@pytest.mark.parametrize(
    ("method", "user", "path", "expected"),
    [
        ("GET", "", "/v2/alice/tools/manifests/1", False),  # anonymous pulls: the kubelet, Apptainer
        ("HEAD", "", "/v2/bob/x/blobs/sha256:00", False),
        ("GET", "", "/v2/_catalog", False),
        ("POST", "alice", "/v2/alice/tools/blobs/uploads/", False),
        ("PATCH", "alice", "/v2/alice/tools/blobs/uploads/5e1f", False),
        ("PUT", "alice", "/v2/alice/a/b/manifests/1", False),  # deeper names under her own
        ("PUT", "alice", "/v2/bob/tools/manifests/1", True),  # not under her name
        ("POST", "bob", "/v2/alice/tools/blobs/uploads/", True),
        ("PUT", "alice", "/v2/alice/manifests/1", True),  # a repository named `alice` is not under it
        ("PUT", "alice", "/v2/aliceb/x/manifests/1", True),  # a name that only starts with hers
        ("PUT", "ali", "/v2/alice/x/manifests/1", True),
        ("PUT", "", "/v2/alice/x/manifests/1", False),  # no credentials: auth_basic answers 401
        ("OPTIONS", "alice", "/v2/alice/x/manifests/1", True),
    ],
)
def test_push_rule_lets_a_user_write_only_under_her_own_name(
    method: str, user: str, path: str, expected: bool
) -> None:
    assert refused(method, user, path) is expected


def test_nginx_serves_tls_on_loopback_with_the_site_certificate_and_checks_passwords(layout: Layout) -> None:
    p = registry.paths(layout)
    conf = registry.build_nginx_conf(layout, p)
    assert f"listen 127.0.0.1:{layout.ports.registry} ssl;" in conf
    assert f"ssl_certificate {layout.pki / 'registry.crt'};" in conf
    assert f"auth_basic_user_file {p.htpasswd};" in conf
    assert registry.PUSH_RULES in conf
    # the rule sits at server level: a location's `if` is not inherited by its limit_except block
    server = conf.split("server {", 1)[1]
    assert server.index("if ($refused)") < server.index("\n    location ")
    assert "limit_except GET HEAD" in conf
    # what is checked is what is passed on: the normalised path, to distribution's socket only
    assert conf.count("proxy_pass http://distribution$uri$is_args$args;") == 2
    assert f"server unix:{p.socket};" in conf
    assert f"user {registry.SERVICE_USER};" in conf


def test_distribution_listens_only_on_its_socket_without_auth_of_its_own(layout: Layout) -> None:
    p = registry.paths(layout)
    conf = registry.build_config(p)
    assert "  net: unix\n" in conf and f"  addr: {p.socket}\n" in conf
    assert f"rootdirectory: {p.storage}" in conf
    assert "relativeurls: true" in conf
    assert "auth:" not in conf  # nginx is the only way in


def test_credentials_file_is_basic_auth_for_the_registry_only() -> None:
    doc = json.loads(registry.build_auth_json("registry.converged.local:5443", "alice", "s3cret:x"))
    assert list(doc["auths"]) == ["registry.converged.local:5443"]
    assert base64.b64decode(doc["auths"]["registry.converged.local:5443"]["auth"]) == b"alice:s3cret:x"


def test_htpasswd_one_sorted_line_per_user() -> None:
    assert registry.build_htpasswd({"bob": "$6$b", "alice": "$6$a"}) == "alice:$6$a\nbob:$6$b\n"


def test_hosts_line_added_once() -> None:
    assert registry.build_hosts_line("127.0.0.1 localhost\n") == f"127.0.0.1 {registry.HOST}\n"
    assert registry.build_hosts_line(f"127.0.0.1 localhost\n10.0.0.5  x {registry.HOST}\n") is None
    assert registry.build_hosts_line(f"# 127.0.0.1 {registry.HOST}\n") == f"127.0.0.1 {registry.HOST}\n"
    assert registry.address(Layout.default()) == f"{registry.HOST}:5443"


def test_containerd_pulls_from_the_registry_verifying_the_site_ca(layout: Layout) -> None:
    p = containerd.paths(layout)
    config = tomllib.loads(containerd.build_config(p, "localhost/converged/pause:1"))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["registry"]["config_path"] == str(p.certs_d)
    hosts = tomllib.loads(containerd.build_hosts_toml("registry.converged.local:5443", layout.pki / "ca.crt"))
    assert hosts["server"] == "https://registry.converged.local:5443"
    host = hosts["host"]["https://registry.converged.local:5443"]
    assert host == {"capabilities": ["pull", "resolve"], "ca": str(layout.pki / "ca.crt")}
    assert "skip_verify" not in host


def test_hpc2_root_trusts_the_site_ca(layout: Layout) -> None:
    lines = root.build_enter_script(root.root_spec(layout)).splitlines()
    target = f'"$r"{root.SITE_CA}'
    mount = lines.index(f"mount --bind {layout.pki / 'ca.crt'} {target}")
    assert (
        lines.index('mkdir -p "$r"/etc/ssl/certs') < lines.index(f"[ -e {target} ] || : > {target}") < mount
    )
    assert lines[mount + 1] == f"mount -o remount,bind,ro {target}"
    assert root.SITE_CA.parent == Path("/etc/ssl/certs")  # Go reads every file there, not only the bundle


def test_subordinate_ids_only_for_users_without_them() -> None:
    subuid = "regtest:100000:65536\nalice:165536:65536\n"
    subgid = "regtest:100000:65536\nalice:165536:65536\n"
    assert userenv.plan_subids(subuid, subgid, ("alice",)) == {}
    assert userenv.plan_subids(subuid, subgid, ("alice", "bob")) == {"bob": 231072}
    assert userenv.plan_subids("", "", ("alice", "bob")) == {"alice": 100000, "bob": 165536}
    # a range in one file only: both given, after everything either file holds
    assert userenv.plan_subids("bob:300000:10\n", "", ("bob",)) == {"bob": 300010}
