"""The site registry: where users push the images their rules name (`container: "docker://..."`).

Debian's docker-registry (CNCF distribution 2.8) keeps the images; nginx (Debian's) in front of it is
the only way in: TLS with a certificate of the site's CA at ADDRESS (a name in /etc/hosts, on loopback)
and the one rule distribution 2.8 cannot make on its own (its htpasswd auth lets every user write every
repository): **a user may push only under her own name** (`alice/...`). Chosen over distribution's token
auth because it is the smallest real thing: one map in nginx.conf compares the authenticated user with
the repository's first component, no token issuer of our own to write, run and keep secure.

- Reads (GET, HEAD) are open, without credentials: the kubelet's containerd pulls with no
  imagePullSecret, and Apptainer on every Slurm node pulls as the user with nothing to configure. The
  registry is on loopback: only the site's own machine reaches it.
- Writes need basic auth from htpasswd, and a user name equal to the repository's first component;
  anything else is 403. The ping (`GET /v2/`) always asks for credentials, so clients that have some
  (podman, buildah, skopeo, `apptainer registry login`) send them on the requests that follow.
- distribution listens on a unix socket that only its own user (nginx's workers run as it too) can
  open: nothing on the machine reaches it around nginx.
- Each user's password is made once, kept here (root only) and written into her home by userenv.py
  (~/.config/containers/auth.json, ~/.apptainer/docker-config.json); never in a spec, status or log.
- Trust: the site's CA goes into the host's trust store (update-ca-certificates: Go programs as Apptainer
  and skopeo, Python, curl), into hpc2's root (hpc2/root.py binds it into /etc/ssl/certs, which Go reads
  file by file) and into containerd's hosts.toml for this registry (containerd.py). System roots, not
  /etc/containers/certs.d: Apptainer 1.5 pulls `docker://` with go-containerregistry, which reads only
  Go's system roots.
- The site's own account, `site`, publishes the step image as `site/step` (a base for users' images).
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import packages, pki, procs
from .layout import Layout
from .procs import Daemon

# buildah and skopeo: what a user builds and pushes with (rootless; uidmap gives her subordinate ids);
# busybox-static: a shell and coreutils to put in an image built FROM scratch
PACKAGES = ["docker-registry", "nginx", "ca-certificates", "buildah", "skopeo", "uidmap", "busybox-static"]
HOST = "registry.converged.local"
SERVICE_USER = "docker-registry"  # the package's system user: owns the storage, runs nginx's workers
REALM = "converged site registry"
CA_TRUST = Path("/usr/local/share/ca-certificates/converged-local-ca.crt")
HOSTS = Path("/etc/hosts")
SITE_USER = "site"  # the site's own images, under <registry>/site/ (the step image: a base for users')
REGISTRY_NAME = "registry"  # procs names of the two daemons
NGINX_NAME = "registry-nginx"


def address(layout: Layout) -> str:
    """host:port, as it is written in image references (`<address>/alice/tools:1`)."""
    return f"{HOST}:{layout.ports.registry}"


@dataclass(frozen=True)
class Paths:
    base: Path

    @property
    def config(self) -> Path:
        return self.base / "config.yml"

    @property
    def nginx_conf(self) -> Path:
        return self.base / "nginx.conf"

    @property
    def htpasswd(self) -> Path:
        return self.base / "htpasswd"

    @property
    def passwords(self) -> Path:
        """One file per user with her password in clear (root only), for userenv.py."""
        return self.base / "passwords"

    @property
    def storage(self) -> Path:
        return self.base / "storage"

    @property
    def socket_dir(self) -> Path:
        return self.base / "socket"

    @property
    def socket(self) -> Path:
        return self.socket_dir / "registry.sock"

    @property
    def nginx_temp(self) -> Path:
        return self.base / "nginx"


def paths(layout: Layout) -> Paths:
    return Paths(layout.component_dir("registry"))


def build_config(p: Paths) -> str:
    """distribution's config.yml (pure): filesystem storage, on a unix socket, no auth of its own (nginx
    is the only client), relative URLs (the Location of an upload is nginx's, not the socket's)."""
    return f"""# Written by deploy/local/localcluster/registry.py; edits are overwritten.
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {p.storage}
  delete:
    enabled: false
http:
  net: unix
  addr: {p.socket}
  relativeurls: true
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


# The map is the per-user rule. Its key is "<method> <user> <path>", the path as nginx normalised it
# (percent-decoded, dot segments resolved): exactly the path passed on (proxy_pass with $uri), and the
# path distribution routes on. The first matching regex wins.
PUSH_RULES = r"""  map "$request_method $remote_user $uri" $refused {
    default 1;
    "~^(GET|HEAD) " 0;                                               # reads: open
    "~^(POST|PUT|PATCH|DELETE)  " 0;                                 # no user yet: auth_basic says 401
    "~^(POST|PUT|PATCH|DELETE) ([^ /]+) /v2/\2/[^ ]+/(blobs|manifests)/" 0;  # under her own name
  }"""


def build_nginx_conf(layout: Layout, p: Paths) -> str:
    """nginx.conf (pure): TLS on ADDRESS, the per-user push rule, distribution behind it."""
    crt, key = layout.pki / "registry.crt", layout.pki / "registry.key"
    auth = f'auth_basic "{REALM}";\n        auth_basic_user_file {p.htpasswd};'
    temps = "\n".join(
        f"  {kind}_temp_path {p.nginx_temp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# Written by deploy/local/localcluster/registry.py; edits are overwritten.
user {SERVICE_USER};
worker_processes 1;
pid {p.base / "nginx.pid"};
error_log stderr warn;
events {{
  worker_connections 256;
}}
http {{
  access_log /dev/stdout;
{temps}
{PUSH_RULES}
  upstream distribution {{
    server unix:{p.socket};
  }}
  server {{
    listen 127.0.0.1:{layout.ports.registry} ssl;
    server_name {HOST};
    ssl_certificate {crt};
    ssl_certificate_key {key};
    client_max_body_size 0;  # layers of any size
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_read_timeout 900s;
    proxy_send_timeout 900s;
    add_header Docker-Distribution-Api-Version registry/2.0 always;
    # here, not in `location /v2/`: a write is served by its limit_except block, which does not inherit
    # a location's rewrite directives (this `if`)
    if ($refused) {{
      return 403;
    }}

    # the ping always asks for credentials: a client that has some then sends them on every request
    location = /v2/ {{
        {auth}
        proxy_pass http://distribution$uri$is_args$args;
    }}
    location /v2/ {{
      limit_except GET HEAD {{
        {auth}
      }}
      proxy_pass http://distribution$uri$is_args$args;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto https;
    }}
    location / {{
      return 404;
    }}
  }}
}}
"""


def build_htpasswd(hashes: dict[str, str]) -> str:
    """htpasswd lines (pure) from crypt(3) hashes by user."""
    return "".join(f"{user}:{hashes[user]}\n" for user in sorted(hashes))


def build_auth_json(registry: str, user: str, password: str) -> str:
    """The credentials file podman, buildah and skopeo read (~/.config/containers/auth.json), which is
    also docker's config.json format (Apptainer's ~/.apptainer/docker-config.json) (pure)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {registry: {"auth": token}}}, indent=2) + "\n"


def build_hosts_line(existing: str) -> str | None:
    """The /etc/hosts line that maps HOST to loopback, or None when `existing` maps it already (pure)."""
    for line in existing.splitlines():
        fields = line.split("#", 1)[0].split()
        if HOST in fields[1:]:
            return None
    return f"127.0.0.1 {HOST}\n"


def _write(path: Path, text: str, mode: int = 0o644, owner: str | None = None) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    if owner:
        shutil.chown(tmp, owner, owner)
    tmp.replace(path)
    return True


def password(layout: Layout, user: str) -> str:
    """The user's registry password, made once (root only)."""
    f = paths(layout).passwords / user
    if not f.exists():
        f.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write(f, secrets.token_urlsafe(24) + "\n", mode=0o600)
    return f.read_text().strip()


def _hash(layout: Layout, user: str) -> str:
    """The user's crypt(3) hash (SHA-512), kept beside her password so htpasswd is stable across ups."""
    f = paths(layout).passwords / f"{user}.hash"
    if not f.exists():
        hashed = procs.run(["openssl", "passwd", "-6", "-stdin"], input=password(layout, user) + "\n")
        _write(f, hashed.stdout.strip() + "\n", mode=0o600)
    return f.read_text().strip()


def trust(layout: Layout) -> None:
    """The site's CA in the host's trust store, and HOST in /etc/hosts. Before Slurm starts: hpc2's
    root binds both (the CA file itself, /etc/hosts edited in place, so running roots see the line)."""
    ca = pki.ca(layout.pki)
    if not CA_TRUST.exists() or CA_TRUST.read_bytes() != ca.read_bytes():
        CA_TRUST.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca, CA_TRUST)
        procs.run(["update-ca-certificates"], timeout=120)
    line = build_hosts_line(HOSTS.read_text())
    if line is not None:
        with HOSTS.open("a") as f:  # in place: /etc/hosts is bind-mounted into hpc2's root
            f.write(line)


def _registry_daemon(p: Paths) -> Daemon:
    return Daemon(REGISTRY_NAME, ["docker-registry", "serve", str(p.config)], user=SERVICE_USER)


def _nginx_daemon(p: Paths) -> Daemon:
    return Daemon(NGINX_NAME, ["nginx", "-e", "stderr", "-c", str(p.nginx_conf), "-g", "daemon off;"])


def up(layout: Layout, users: tuple[str, ...]) -> None:
    """Write the configuration and the users' credentials, start distribution and nginx (restarting the
    one whose configuration changed), wait until a read through nginx answers."""
    packages.ensure(PACKAGES)
    trust(layout)
    p = paths(layout)
    pki.cert(layout.pki, "registry", f"/CN={HOST}", server=True, sans=[f"DNS:{HOST}", "IP:127.0.0.1"])
    for d in (p.storage, p.socket_dir, p.nginx_temp):
        d.mkdir(parents=True, exist_ok=True)
        shutil.chown(d, SERVICE_USER, SERVICE_USER)
    p.socket_dir.chmod(0o700)
    registry_changed = _write(p.config, build_config(p))
    nginx_changed = _write(p.nginx_conf, build_nginx_conf(layout, p))
    # read by nginx's workers at each request: a new user needs no restart
    accounts = (*users, SITE_USER)
    _write(p.htpasswd, build_htpasswd({u: _hash(layout, u) for u in accounts}), 0o600, SERVICE_USER)
    if registry_changed:
        procs.stop(layout, REGISTRY_NAME)
    if nginx_changed:
        procs.stop(layout, NGINX_NAME)
    if procs.running(layout, REGISTRY_NAME) is None:
        p.socket.unlink(missing_ok=True)  # left by a registry that was killed: it would refuse to listen
    procs.start_and_wait(layout, _registry_daemon(p), lambda: (p.socket.exists(), ""), 30)
    procs.start_and_wait(layout, _nginx_daemon(p), lambda: probe(layout), 30)


def manifest_digest(layout: Layout, repository: str, tag: str) -> str | None:
    """The digest `repository:tag` names in the registry (an anonymous HEAD), None if it has none."""
    url = f"https://{address(layout)}/v2/{repository}/manifests/{tag}"
    accept = (
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    )
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": accept})
    ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:  # noqa: S310 - the site's URL
            digest = resp.headers.get("Docker-Content-Digest")
    except OSError:
        return None
    return str(digest) if digest else None


def publish(layout: Layout, name: str, archive: Path, tags: tuple[str, ...], digest: str) -> None:
    """Push the site's OCI archive `archive` (one manifest, `digest`, named by each of `tags`) as
    <registry>/site/<name>:<tag>, unless every tag already names that digest. The archive's layer is
    pushed as it is (uncompressed: on loopback, compressing would only cost time), so the registry's
    manifest is the archive's, with the same digest."""
    repository = f"{SITE_USER}/{name}"
    missing = [t for t in tags if manifest_digest(layout, repository, t) != digest]
    if not missing:
        return
    authfile = paths(layout).passwords / f"{SITE_USER}-auth.json"
    _write(authfile, build_auth_json(address(layout), SITE_USER, password(layout, SITE_USER)), mode=0o600)
    first = f"docker://{address(layout)}/{repository}:{missing[0]}"
    copy = ["skopeo", "copy", "--quiet", "--preserve-digests", f"--authfile={authfile}"]
    procs.run([*copy, f"oci-archive:{archive}:{missing[0]}", first], timeout=900)
    for tag in missing[1:]:  # every blob is there: only the manifest is put
        procs.run([*copy, first, f"docker://{address(layout)}/{repository}:{tag}"], timeout=300)


def down(layout: Layout) -> None:
    procs.stop(layout, NGINX_NAME)
    procs.stop(layout, REGISTRY_NAME)


def probe(layout: Layout) -> tuple[bool, str]:
    """An anonymous read through nginx, TLS verified with the site's CA: the catalog's repositories."""
    url = f"https://{address(layout)}/v2/_catalog"
    ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            repos = json.load(resp).get("repositories") or []
    except (OSError, ValueError) as e:  # URLError is an OSError
        return False, f"{url}: {e}"
    return True, f"{address(layout)}: {len(repos)} repositories; pushes under each user's own name"


def health(layout: Layout) -> list[tuple[str, bool, str]]:
    down_ = [n for n in (REGISTRY_NAME, NGINX_NAME) if procs.running(layout, n) is None]
    if down_:
        return [("registry", False, f"not running: {', '.join(down_)}")]
    ok, detail = probe(layout)
    return [("registry", ok, detail)]


def env(layout: Layout) -> dict[str, str]:
    return {"CONVERGED_REGISTRY": address(layout)}
